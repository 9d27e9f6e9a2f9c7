"""PII detector: planted values per type are found with their spans, near misses are not, repeated
values are counted across records and shards, and `--redact` writes placeholders, never values."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.detectors.memorization.pii import PII, make_redactor
from shardguard.detectors.memorization.pii_patterns import find_pii
from shardguard.report.sections import renderer

PLANTED = {
    "email": ["john.doe@example.com", "m.garcia+news@mail.uni-hamburg.de", "Katie@BigDayCelebrations.com"],
    "phone": ["(415) 555-2671", "415-555-2671", "415.555.2671", "+1 202 555 0143", "+44 20 7946 0958",
              "001-234-567-8901x123"],
    "credit_card": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011111111111117"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR1420041010050500013M02606"],
    "ip_address": ["203.0.113.45", "91.198.174.192", "2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a"],
    "ssn": ["123-45-6789", "536-22-1987"],
    "address": ["1600 Pennsylvania Avenue NW, Washington, DC 20500", "742 Evergreen Terrace", "221 Baker St."],
}


def batch_of(texts, shard="s.jsonl", start=0):
    n = len(texts)
    return pa.record_batch({"shard": [shard] * n, "row": list(range(start, start + n)),
                            "record_id": [f"{shard}:{i}" for i in range(start, start + n)], "kind": ["web"] * n,
                            "text": texts, "url": [None] * n})


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_planted_values_found_with_type_and_span(kind):
    for value in PLANTED[kind]:
        text = f"Some context first. Reach the person at {value} for details.\nMore text."
        ms = find_pii(text)
        assert [(m.type, text[m.start:m.end]) for m in ms] == [(kind, value)], (value, ms)


@pytest.mark.parametrize("text", [
    "Card 4111 1111 1111 1112 fails Luhn.",                 # Luhn
    "Number 1234 5678 9012 3452 has no issuer prefix.",     # Luhn-valid, no IIN
    "IBAN DE89 3704 0044 0532 0130 01 has a bad checksum.",  # mod 97
    "SSN 000-12-3456, 666-12-3456, 912-12-3456, 123-00-4567 are never issued.",
    "Upgrade to v1.2.3.4 or version 10.2.33.4 today; driver 14.0.1.0; see section 1.2.3.4.",
    "Localhost 127.0.0.1 and 0.0.0.0 are not addresses of anyone.",
    "Retina asset icon@2x.png and logo@3x.jpg.",
    "EPA 27 MPG Hwy/20 MPG City, and the 1927 Supreme Court decision.",
    "Scores 12:30:45 and ratio 3:2:1 are times, not IPv6.",
    "Between 1990 and 2000 some 4,500 people moved; ISBN 978-3-16-148410-0.",
])
def test_near_misses_not_flagged(text):
    assert find_pii(text) == []


def test_counts_repeats_across_records_and_shards_and_masks():
    d = PII()
    email, phone = "jane.roe@mailbox.org", "(212) 555-0187"
    a = batch_of([f"Write to {email}." for _ in range(3)] + ["Nothing here."], shard="a.jsonl")
    b = batch_of([f"Mail {email} or call {phone}.", f"Again {email}"], shard="b.jsonl")
    c = batch_of(["Only a phone: (212) 555-0187", "plain text"], shard="c.jsonl")
    sa, sb, sc = d.observe(a), d.observe(b), d.observe(c)
    left = d.merge(d.merge(d.observe(a), d.observe(b)), d.observe(c))
    right = d.merge(sa, d.merge(sb, sc))
    assert d.finalize(left, {}) == d.finalize(right, {})  # associative
    model = d.finalize(right, {})
    flags = d.flag(b, model)
    assert len(flags) == 2
    first = flags[0]
    assert "seen in 5 records across 2 shards" in first["reason"]
    m = {x["type"]: x for x in first["details"]["matches"]}
    assert m["email"]["records"] == 5 and m["email"]["shards"] == 2
    assert m["phone"]["records"] == 2
    # span points at the value in the scanned field
    text = b.column("text")[0].as_py()
    assert text[m["email"]["start"]:m["email"]["end"]] == email and m["email"]["field"] == "text"
    # repetition raises the score
    single = d.flag(batch_of(["unique@posteo.net"]), d.finalize(d.observe(batch_of(["unique@posteo.net"])), {}))
    assert first["score"] > single[0]["score"]
    disc = d.discoveries(model)
    assert disc["most_repeated"][0]["records"] == 5 and disc["most_repeated"][0]["masked"] == "j***@mailbox.org"
    blob = json.dumps([flags, disc]) + (renderer("pii")(disc) or "")
    assert email not in blob and "555-0187" not in blob and "5550187" not in blob


def test_sft_fields_are_scanned_separately():
    n = 2
    batch = pa.record_batch({"shard": ["x"] * n, "row": [0, 1], "record_id": ["a", "b"], "kind": ["sft"] * n,
                             "text": ["", ""], "instruction": ["Email me", "hi"], "input": [None, ""],
                             "response": ["Sure: bob@example.com", "no pii"]})
    d = PII()
    fl = d.flag(batch, d.finalize(d.observe(batch), {}))
    assert [f["i"] for f in fl] == [0]
    x = fl[0]["details"]["matches"][0]
    assert x["field"] == "response" and "Sure: bob@example.com"[x["start"]:x["end"]] == "bob@example.com"


def test_clean_wikipedia_has_few_findings():
    rows = read_jsonl_gz(SAMPLE / "web_wikipedia_passages" / "wikipedia_passages.part1.web.jsonl.gz")
    d = PII()
    batch = batch_of([r["text"] for r in rows])
    fl = d.flag(batch, d.finalize(d.observe(batch), {}))
    # hand-checked: encyclopedic prose holds almost no PII (4 findings in all 3,134 passages, see docs)
    assert len(fl) <= 0.005 * len(rows), [f["reason"] for f in fl]


def test_redactor_round_trip_nested_and_untouched():
    redact = make_redactor()
    rec = {"messages": [{"role": "user", "content": "My card is 4111 1111 1111 1111 and SSN 123-45-6789."},
                        {"role": "assistant", "content": "Noted. Key AKIAIOSFODNN7EXAMPLE will be revoked."}],
           "meta": {"contact": "Call +44 20 7946 0958 or write ana@example.es", "n": 3}, "ok": True}
    out = json.loads(redact(json.dumps(rec), "sft", ("instruction", "input", "response")))
    assert out["messages"][0]["content"] == "My card is [CREDIT_CARD] and SSN [SSN]."
    assert out["messages"][1]["content"] == "Noted. Key [AWS_KEY] will be revoked."
    assert out["meta"] == {"contact": "Call [PHONE] or write [EMAIL]", "n": 3} and out["ok"] is True
    clean = json.dumps({"text": "Nothing personal in here at all, version 1.2.3.", "url": "https://example.com/a"})
    assert redact(clean, "web", ("text", "url")) == clean  # byte-identical when nothing is found
    bad = "{not json"  # never crash on a raw that does not parse
    assert redact(bad, "web", ("text",)) == bad


def test_scan_redact_end_to_end_writes_placeholders_and_no_values(tmp_path):
    from shardguard.flows.scan import run_scan

    rows = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=80)
    planted = {"email": "olivia.planted@example.com", "phone": "(646) 555-0199", "credit_card": "4111111111111111",
               "iban": "DE89370400440532013000", "ssn": "536-22-1987", "ip_address": "198.51.100.77",
               "address": "742 Evergreen Terrace", "aws_key": "AKIAZ7Q3PLANTED12345"}
    for i, (k, v) in enumerate(planted.items()):
        rows[5 + 7 * i]["text"] += f"\nPlanted {k.replace('_', ' ')}: {v} (keep private)."
    rows[70]["text"] += f"\nAgain {planted['email']}."
    src = write_jsonl(tmp_path / "in" / "web.jsonl", rows)
    out = tmp_path / "out"
    summary = run_scan([src], out, config={"redact": True, "only": ["pii", "secrets"]}, use_prefect=False)
    assert summary["accounting_ok"]
    flags = pq.read_table(out / "flags.parquet").to_pylist()
    flagged = {(f["row"], f["category"]) for f in flags}
    for i, k in enumerate(planted):
        assert (5 + 7 * i, "secret" if k == "aws_key" else "pii") in flagged, k
    email_flag = next(f for f in flags if f["row"] == 70 and f["category"] == "pii")
    assert "seen in 2 records" in email_flag["reason"]
    written = "".join(p.read_text() for p in sorted((out / "clean").rglob("*.jsonl")))
    written_q = "".join(p.read_text() for p in sorted((out / "quarantine").rglob("*.jsonl")))
    assert len(written.splitlines()) + len(written_q.splitlines()) == 80
    for tag in ("[EMAIL]", "[PHONE]", "[CREDIT_CARD]", "[IBAN]", "[SSN]", "[IP_ADDRESS]", "[ADDRESS]"):
        assert tag in written, tag
    assert "[AWS_KEY]" in written_q  # secrets are held back, and redacted there too
    outputs = {"clean+quarantine": written + written_q, "flags": json.dumps(flags, ensure_ascii=False),
               "report": (out / "report.html").read_text(), "summary": (out / "summary.json").read_text()}
    for name, blob in outputs.items():
        for k, v in planted.items():
            assert v not in blob, (name, k)


def test_example_domain_emails_score_low_but_are_redacted():
    d = PII()
    b = batch_of(["Write to your_email@example.com", "Write to ana.lopez@posteo.de"])
    fl = d.flag(b, d.finalize(d.observe(b), {}))
    assert [f["details"]["matches"][0]["subtype"] for f in fl] == ["example_domain", ""]
    assert fl[0]["score"] == pytest.approx(0.2) and fl[1]["score"] == pytest.approx(0.5)
    assert make_redactor()(json.dumps({"text": "Write to your_email@example.com"}), "web", ("text",)) \
        == json.dumps({"text": "Write to [EMAIL]"})
