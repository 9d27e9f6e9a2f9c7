"""The detector contract beyond the batch methods: typed settings, `requires`, declared categories and
external detectors found through the `shardguard.detectors` entry point group."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shardguard import detectors
from shardguard.detectors import SettingsError

PLUGIN = Path(__file__).parent / "plugin_pkg"


def test_settings_are_typed_and_unknown_keys_listed():
    reg = detectors.registry()
    d = reg["minhash"](threshold=0.7)
    assert d.settings.threshold == 0.7 and d.config["num_perm"] == 128
    with pytest.raises(SettingsError, match=r"unknown setting\(s\) \['treshold'\]; known: .*threshold"):
        reg["minhash"](treshold=0.7)
    with pytest.raises(SettingsError, match="'threshold' must be float, got str"):
        reg["minhash"](threshold="high")
    with pytest.raises(SettingsError, match="'num_perm' must be int"):
        reg["minhash"](num_perm=12.5)


def test_requires_enables_what_a_detector_needs_or_fails_clearly():
    names = [d.name for d in detectors.build(only=["campaign"])]
    assert names == ["minhash", "campaign"]  # minhash first: campaign reads its clusters
    with pytest.raises(ValueError, match="'campaign' requires 'minhash', but the configuration disables it"):
        detectors.build({"minhash": {"enabled": False}}, only=["campaign"])


def test_every_builtin_detector_declares_a_public_category():
    for name, cls in detectors.registry().items():
        assert cls.category in detectors.categories(), name
        assert cls.settings_type() is not None


def test_external_detector_package_by_entry_point(tmp_path):
    """A user's own package adds a detector (and its report section) without touching shardguard."""
    site, src = tmp_path / "site", tmp_path / "plugin_pkg"
    shutil.copytree(PLUGIN, src)  # pip builds in the source folder: keep ours clean
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True)
    data = tmp_path / "in.jsonl"
    rows = [{"text": "THIS WHOLE DOCUMENT IS WRITTEN IN CAPITAL LETTERS FOR NO REASON", "url": "https://a.example/1"},
            {"text": "A calm document in ordinary case, as most of them are written.", "url": "https://a.example/2"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[detectors.shout]\nmin_letters = 10\n")
    shardguard = Path(sys.executable).with_name("shardguard")
    res = subprocess.run([str(shardguard), "scan", str(data), "--out", str(tmp_path / "out"), "--config", str(cfg),
                          "--detectors", "shout,exact_dup", "--fail-on", "shouting"],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 3, res.stderr  # its own category, usable with --fail-on
    flags = pq.read_table(tmp_path / "out" / "flags.parquet").to_pylist()
    assert [(f["row"], f["detector"], f["category"]) for f in flags] == [(0, "shout", "shouting")]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["discoveries"]["shout"] == {"loud_rows": 1}
    assert summary["rows_by_category"]["shouting"] == 1
    assert "<p class=shout>1 rows written in capitals</p>" in (tmp_path / "out" / "report.html").read_text()
    # a wrong setting type in the user's config is a usage error naming the known settings
    cfg.write_text('[detectors.shout]\nmin_letters = "ten"\n')
    res = subprocess.run([str(shardguard), "scan", str(data), "--out", str(tmp_path / "out2"), "--config", str(cfg)],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "min_letters" in res.stderr and "known: ['min_letters', 'share']" in res.stderr
