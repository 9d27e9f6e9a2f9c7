"""Secrets detector (detect-secrets plugins in-process): planted credentials are found with their
spans and types, prose that merely talks about passwords and tokens is not, repeats are counted,
and no finding, discovery or report ever holds a whole secret."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import SAMPLE, read_jsonl_gz

from shardguard.detectors.memorization.secret_patterns import find_secrets
from shardguard.detectors.memorization.secrets import Secrets
from shardguard.report.sections import renderer

PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
       "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----")
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5"
       "MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PLANTED = [  # (type, subtype, text before, value, text after)
    ("aws_key", "aws_access_key_id", "aws_access_key_id = ", "AKIAIOSFODNN7EXAMPLE", "\n"),
    ("aws_key", "aws_secret_access_key", "aws_secret_access_key = ", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "\n"),
    ("aws_key", "aws_secret_access_key", 'aws_secret_key: "', "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY", '"'),
    ("github_token", "github", "export GITHUB_TOKEN=", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", " # ci"),
    ("slack_token", "slack", "bot token ", "xoxb-263594206564-2343594206574-FGqddMF8t08v8N7Oq4i57vs1", "."),
    ("slack_token", "slack", "webhook: ", "https://hooks.slack.com/services/T024BE7LD/B01ABCDEF12/a1B2c3D4e5F6g7H8i9J0k1L2", " ok"),
    ("private_key", "rsa_private_key", "key file:\n", PEM, "\nend"),
    ("jwt", "jwt", "Authorization header carries ", JWT, " here"),
    ("secret", "stripe", "stripe.api_key = '", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "'"),
    ("secret", "hex_high_entropy", "API_KEY=", "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "\n"),
    ("secret", "base64_high_entropy", "client_secret: ", "Zk3q9PbX2LmW7vR4tN8sY1cH6jD0gF5a", "\n"),
    ("secret", "password", "db password: ", "Tr0ub4dor&3x", " (rotate it)"),
]


def batch_of(texts, shard="s.jsonl"):
    n = len(texts)
    return pa.record_batch({"shard": [shard] * n, "row": list(range(n)), "record_id": [f"{shard}:{i}" for i in range(n)],
                            "kind": ["web"] * n, "text": texts, "url": [None] * n})


@pytest.mark.parametrize("kind,subtype,before,value,after", PLANTED, ids=[f"{p[0]}-{p[1]}" for p in PLANTED])
def test_planted_secret_found_with_type_and_span(kind, subtype, before, value, after):
    text = "Some config from a forum post.\n" + before + value + after + "\nThanks!"
    ms = find_secrets(text)
    assert [(m.type, m.subtype, text[m.start:m.end]) for m in ms] == [(kind, subtype, value)]


@pytest.mark.parametrize("text", [
    "Forgot your password? Click the reset link. Your password must be at least eight characters long.",
    'She said "the secret ingredient is love" and the token of appreciation was a hand-written card.',
    "The API key is shown on the dashboard; never share your access key with anyone.",
    "Password: required. Token: optional. Secret: none.",
    "AKIA is a prefix; akiaiosfodnn7example is lowercase; ghp_short is too short.",
    "eyJhello.world is not a JWT, nor is eyJ0eXAi.bad.",
    "Use the bearer token scheme described in RFC 6750 for authentication.",
    "Commit 9f8e7d6c5b4a39281706f5e4d3c2b1a0 fixed the build.",  # a hash without a secret keyword
])
def test_prose_and_near_misses_not_flagged(text):
    assert find_secrets(text) == []


def test_clean_web_samples_have_no_secret_findings():
    rows = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz") + \
        read_jsonl_gz(SAMPLE / "web_wikipedia_passages" / "wikipedia_passages.part2.web.jsonl.gz")
    d = Secrets()
    batch = batch_of([r["text"] for r in rows])
    fl = d.flag(batch, d.finalize(d.observe(batch), {}))
    assert fl == [], [f["reason"] for f in fl]


def test_repeats_raise_score_and_nothing_is_written_in_full():
    d = Secrets()
    key = "AKIAZ7Q3PLANTED12345"
    texts = [f"row {i}: aws key {key}" for i in range(8)] + [f"other {PEM}", "nothing"]
    b1, b2 = batch_of(texts[:5], "a"), batch_of(texts[5:], "b")
    model = d.finalize(d.merge(d.observe(b1), d.observe(b2)), {})
    fl = d.flag(b2, model)
    assert [f["i"] for f in fl] == [0, 1, 2, 3]
    aws, pem = fl[0], fl[3]
    assert "seen in 8 records across 2 shards" in aws["reason"] and aws["score"] == 1.0
    assert pem["score"] == pytest.approx(0.85) and "seen in 1 record" in pem["reason"]
    assert aws["details"]["matches"][0]["masked"] == "AKIA…(20 chars)"
    disc = d.discoveries(model)
    assert disc["most_repeated"][0] == {"type": "aws_key", "masked": "AKIA…(20 chars)",
                                        "hash": aws["details"]["matches"][0]["hash"], "records": 8, "shards": 2}
    blob = json.dumps([fl, disc]) + renderer("secrets")(disc)
    assert key not in blob and "MIIEowIBAAKCAQEA" not in blob and key[4:] not in blob


def test_hash_salt_changes_hashes_but_not_counts():
    texts = ["token ghp_16C7e42F292c6912E7710c838347Ae178B4a"] * 3
    b = batch_of(texts)
    plain, salted = Secrets(), Secrets(hash_salt="org-secret")
    m1, m2 = plain.finalize(plain.observe(b), {}), salted.finalize(salted.observe(b), {})
    assert set(m1) != set(m2) and [v[0] for v in m1.values()] == [v[0] for v in m2.values()] == [3]


def test_poison_attacks_recall_and_no_full_value_in_outputs(tmp_path):
    """Both planting attacks from shardguard.eval.poison/ on real web rows, through the whole scan: recall per type
    >= 0.95 (value-level: the planted value's hash is among the row's findings) and no planted value
    in flags.parquet, summary.json or report.html."""
    import pyarrow.parquet as pq
    from conftest import write_jsonl

    from shardguard.detectors.memorization.values import value_hash
    from shardguard.eval import poison
    from shardguard.flows.scan import run_scan

    rows = [{"text": r["text"], "url": r["url"]} for r in
            read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=400)]
    rows, t_pii = poison.get("web_pii").apply(rows, rate=0.15, seed=3)
    rows, t_sec = poison.get("web_secrets").apply(rows, rate=0.15, seed=4)
    src = write_jsonl(tmp_path / "web.jsonl", rows)
    out = tmp_path / "out"
    run_scan([src], out, config={"only": ["pii", "secrets"]}, use_prefect=False)
    flags = pq.read_table(out / "flags.parquet").to_pylist()
    found = {}
    for f in flags:
        for m in json.loads(f["details"])["matches"]:
            found.setdefault((f["row"], f["category"]), set()).add(m["hash"])
    typemap = {"street_address": "address", "aws": "aws_key", "api_key": "secret"}
    values = []
    for truth, cat in ((t_pii, "pii"), (t_sec, "secret")):
        per_type = {}
        for r, det in truth["row_details"].items():
            for t, vals in det["by_type"].items():
                for v in vals:
                    values.append(v)
                    kinds = [typemap.get(t, t)] + (["aws_key", "secret"] if t == "aws" else [])
                    hit = any(value_hash(k, v) in found.get((int(r), cat), ()) for k in kinds)
                    per_type.setdefault(t, []).append(hit)
        assert len(per_type) >= 6
        for t, hits in per_type.items():
            assert sum(hits) / len(hits) >= 0.95, (t, sum(hits), len(hits))
    blobs = [json.dumps(flags), (out / "summary.json").read_text(), (out / "report.html").read_text()]
    leaked = [v[:12] for v in values for b in blobs if v in b]
    assert not leaked
