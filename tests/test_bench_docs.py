"""benchmarks/_docs.py: a benchmark rewrites its own section of the page and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _docs import markdown_table, results_table, write_section  # noqa: E402


def test_section_is_replaced_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_NO_DOCS", raising=False)
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro kept\n")
    write_section("benchmarks/bench_a.py", "A", "first a", doc)
    write_section("benchmarks/bench_b.py", "B", "only b", doc)
    write_section("benchmarks/bench_a.py", "A", "second a", doc)
    text = doc.read_text()
    assert "intro kept" in text and "only b" in text and "second a" in text
    assert "first a" not in text
    assert text.count("<!-- bench:bench_a -->") == 1
    assert text.index("bench:bench_a") < text.index("bench:bench_b")  # stays where it was
    assert "Written by `python benchmarks/bench_a.py" in text


def test_parts_of_one_script_have_their_own_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_NO_DOCS", raising=False)
    doc = tmp_path / "benchmarks.md"
    write_section("benchmarks/bench_a.py", "A x", "x one", doc, part="x")
    write_section("benchmarks/bench_a.py", "A y", "y one", doc, part="y")
    write_section("benchmarks/bench_a.py", "A x", "x two", doc, part="x")
    text = doc.read_text()
    assert "y one" in text and "x two" in text and "x one" not in text
    assert text.count("<!-- bench:bench_a:x -->") == 1 and text.count("<!-- bench:bench_a:y -->") == 1


def test_no_docs_leaves_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_NO_DOCS", "1")
    doc = tmp_path / "benchmarks.md"
    assert write_section("benchmarks/bench_a.py", "A", "x", doc) is None
    assert not doc.exists()


def test_tables() -> None:
    assert markdown_table(["a", "b"], [[1, 2]]).splitlines() == ["| a | b |", "| --- | ---: |", "| 1 | 2 |"]
    table = results_table({"x": {"p": 1.5e-17, "n": 3}, "runs": list(range(20))})
    assert "| x.p | 1.5e-17 |" in table and "| x.n | 3 |" in table
    assert "| runs | 20 values, 0 .. 19 |" in table
