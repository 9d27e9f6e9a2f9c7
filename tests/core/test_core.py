"""The core layer: schemas, kinds and categories defined once; normalization; the graph/LSH helpers."""

from __future__ import annotations

import numpy as np
import pytest

from shardguard.core import schema
from shardguard.core.graph import components, lsh_bands
from shardguard.core.normalize import normalize


def test_public_categories_and_kinds_are_the_contracts():
    assert schema.CATEGORIES == ("poison", "duplicate", "pii", "secret", "quality", "malformed")
    assert schema.KINDS == ("web", "sft", "preference")
    assert schema.RECORD_SCHEMA.names[:4] == ["shard", "row", "seq", "record_id"]
    assert schema.FINDING_SCHEMA.names[:7] == ["shard", "row", "record_id", "detector", "category", "score", "reason"]


@pytest.mark.parametrize("name,stem", [("a.jsonl.gz", "a.jsonl"), ("b.parquet", "b.parquet"), ("c.json.zst", "c.json"),
                                       ("d.txt.xz", "d.txt"), ("e.csv.bz2", "e.csv")])
def test_strip_compression(name, stem):
    assert schema.strip_compression(name) == stem


def test_normalize_folds_evasions():
    # fullwidth, zero-width space, Cyrillic a, case and spacing all fold to the same matching form
    assert normalize("Ｃｌｉｃｋ\u200b  HERE аnd win") == normalize("click here and win") == "click here and win"


def test_components_labels_connected_nodes_alike():
    lab = components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert lab[0] == lab[1] == lab[2] and lab[4] == lab[5] and len({lab[0], lab[3], lab[4]}) == 3
    assert len(components(0, np.array([]), np.array([]))) == 0


@pytest.mark.parametrize("threshold,num_perm", [(0.8, 128), (0.5, 64), (0.9, 128)])
def test_lsh_bands_match_datasketch(threshold, num_perm):
    """Our band search gives datasketch's MinHashLSH parameters (its public constructor)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))
    assert lsh_bands(threshold, num_perm, 0.05, 0.95) == (lsh.b, lsh.r)
