"""Spec corpus: small hand-written JSONL logs (tests/traffic/corpus/*/) and what reading each must give.

Each case holds `events.jsonl` and `expect.json`: `rows` read (and optionally
`distinct_ts`, `warning`), or the `error` row (line) and column. Plain and
gzip-compressed copies of each case must behave the same.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from distillguard._errors import LogFormatError
from distillguard.traffic import TrafficLog

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "jsonl.gz"])
@pytest.mark.parametrize("case", CASES)
def test_corpus_case(case: str, gz: bool, tmp_path: Path) -> None:
    expect = json.loads((CORPUS / case / "expect.json").read_text())
    source = CORPUS / case / "events.jsonl"
    if gz:
        if (
            "warning" in expect
        ):  # a cut-off line inside a whole gzip stream is bad JSON, not a cut-off file
            expect = {"error": {"row": len(source.read_bytes().splitlines()), "column": None}}
        (tmp_path / "events.jsonl.gz").write_bytes(gzip.compress(source.read_bytes()))
    else:
        shutil.copy(source, tmp_path / "events.jsonl")
    log = TrafficLog(tmp_path)
    if "error" in expect:
        with pytest.raises(LogFormatError) as info:
            log.read("events")
        assert (info.value.row, info.value.column) == (
            expect["error"]["row"],
            expect["error"]["column"],
        ), str(info.value)
        assert info.value.file == str(log.files("events")[0])
        return
    table = log.read("events")
    assert table.num_rows == expect["rows"]
    if "distinct_ts" in expect:
        assert len(set(table.column("ts").to_pylist())) == expect["distinct_ts"]
    assert [w.code for w in log.warnings] == ([expect["warning"]] if "warning" in expect else [])
