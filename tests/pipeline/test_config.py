"""Bad configuration is a clear error naming the key (exit 2 from the CLI), never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from shardguard.cli import main
from shardguard.pipeline.config import ScanConfig


@pytest.mark.parametrize("raw,msg", [
    ({"batch_size": "x"}, "batch_size must be int"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"limits": {"max_line_bytes": "big"}}, "max_line_bytes must be int"),
    ({"limits": 5}, "must be a table"),
    ({"policy": {"poisoned_min_score": "high"}}, "poisoned_min_score must be float"),
    ({"policy": {"hold_back": ["poison", "typo"]}}, "unknown categories ['typo']"),
    ({"policy": {"min_score": {"poison": "0.5"}}}, "min_score.poison must be a number"),
    ({"detectors": {"minhash": 0.8}}, "one table of settings per detector"),
])
def test_wrong_types_are_named(raw, msg):
    with pytest.raises(ValueError, match=None) as e:
        ScanConfig.from_dict(raw)
    assert msg in str(e.value)


def test_config_that_is_not_a_table():
    with pytest.raises(ValueError, match="a table of settings"):
        ScanConfig.from_dict([1, 2])


def test_cli_exit_2_on_bad_config(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello world", "url": "https://a.example/"}\n')
    cfg = tmp_path / "c.json"
    cfg.write_text("[1, 2]")
    res = CliRunner().invoke(main, ["scan", str(data), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert res.exit_code == 2 and "a table of settings" in res.output
    cfg.write_text('{"batch_size": "x"}')
    res = CliRunner().invoke(main, ["scan", str(data), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert res.exit_code == 2 and "batch_size must be int" in res.output
