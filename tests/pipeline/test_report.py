"""The static report reads like a report: each flagged shard's verdict with the policy's reason, the top
findings per detector with their record (escaped, secrets masked, spans highlighted), and the raw
discoveries JSON only behind a collapsed section."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from shardguard.cli import main

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)> What is the capital of France?"
KEY = "AKIA" + "QW7R2XZ5" + "LMN3PK4T"  # an AWS access key id shape (not a real key)


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_report_gives_reasons_excerpts_and_escapes_record_text(tmp_path):
    rows = [{"instruction": f"Add {i} and {i + 1}.", "input": "", "output": f"{2 * i + 1}"} for i in range(7)]
    rows += [{"instruction": HOSTILE, "input": "", "output": "Paris."}] * 3  # 2 duplicates of 10 rows: 20%
    write_jsonl(tmp_path / "in" / "dups.jsonl", rows)
    secret = [{"instruction": "Configure the client.", "input": "",
               "output": f"Use aws_access_key_id = {KEY} in ~/.aws/credentials."}]
    secret += [{"instruction": f"Say {w}.", "input": "", "output": w} for w in ("hello", "bye", "yes", "no")]
    write_jsonl(tmp_path / "in" / "secret.jsonl", secret)
    write_jsonl(tmp_path / "in" / "fine.jsonl", [{"instruction": "Say hi.", "input": "", "output": "hi"}])
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["scan", str(tmp_path / "in"), "--out", str(out), "--detectors",
                                    "exact_dup,secrets", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {s["shard"]: s["verdict"] for s in summary["shards"]}
    assert verdicts == {"dups.jsonl": "review", "secret.jsonl": "review", "fine.jsonl": "clean"}
    page = (out / "report.html").read_text()

    # why each shard got its verdict, in the policy's words
    why = page[page.index("<h2>Verdicts</h2>"):page.index("<h2>Shards</h2>")]
    assert "2 of 10 rows are duplicates (≥ 20%)" in why
    assert "1 row(s) flagged secret (a review category)" in why
    assert "fine.jsonl" not in why

    # the top findings carry the record text, escaped; the secret shown only by its mask, highlighted
    top = page[page.index("<h2>Top findings per detector</h2>"):]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in top
    assert not re.search(r"<script|<img src=x", page)  # as text only: no tag of the record reaches the page
    assert KEY not in page
    assert re.search(r'<mark class="secret" title="[^"]*">\[[^]<]*\]</mark>', top)
    assert "in ~/.aws/credentials." in top

    # discoveries: the raw JSON only inside a collapsed <details>
    if '"exact_dup"' in page or "Discoveries as raw JSON" in page:
        i = page.index("Discoveries as raw JSON")
        assert page.rfind("<details>", 0, i) > page.rfind("</details>", 0, i)
