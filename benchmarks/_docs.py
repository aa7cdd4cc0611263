"""Each benchmark rewrites its own section of docs/benchmarks.md, so no number there is pasted.

A section runs from `<!-- bench:NAME -->` to `<!-- /bench:NAME -->`, NAME being the script's
file name (and the part of its measurements, when it names one); it is replaced whole (or appended when new), the rest of the page is left alone.
Set `BENCH_NO_DOCS=1` to leave the page untouched (quick runs at small sizes).

The two labs, `detector_lab.py` (tuning the detector) and `bench_watermark_5pct_lab.py`
(choosing the radioactivity settings), print and write nothing here: tuning runs are not
measurements; `bench_watermark.py` reports the 5 % experiment on fresh keys.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; `align` has one letter per column, `l` or `r` (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = [header, rule, *[[str(c) for c in r] for r in rows]]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def write_section(script: str, title: str, body: str, doc: Path = DOC, part: str = "") -> Path | None:
    """Replace the section of `script` (its `__file__`) in docs/benchmarks.md with `body`.

    The section starts with the title, the command line that produced it, the date and the
    machine's CPU count, so every number says how to reproduce it. A script whose runs measure
    separate things (one task each) names the `part` each run rewrites: `NAME:part`.
    """
    if os.environ.get("BENCH_NO_DOCS") == "1":
        return None
    name = Path(script).stem + (f":{part}" if part else "")
    command = " ".join(["python", f"benchmarks/{Path(script).name}", *map(shlex.quote, sys.argv[1:])])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"Written by `{command}` on {stamp} ({os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}).\n\n{body.strip()}\n<!-- /bench:{name} -->"
    )
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text, encoding="utf-8")
    print(f"wrote its section of {doc}")
    return doc


def _fmt(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4g}"


def results_table(results: dict[str, object], max_list: int = 8) -> str:
    """Every number of a nested results dict as `name | value` rows (dotted names).

    For benchmarks whose results are a tree of experiments rather than one table; lists longer
    than `max_list` are summarised by their length, min and max.
    """
    rows: list[list[str]] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list | tuple):
            nums = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(value) <= max_list or len(nums) != len(value):
                rows.append([prefix, ", ".join(_fmt(v) for v in value[:max_list])
                             + (" ..." if len(value) > max_list else "")])
            else:
                rows.append([prefix, f"{len(value)} values, {_fmt(min(nums))} .. {_fmt(max(nums))}"])
        else:
            rows.append([prefix, _fmt(value)])

    walk("", results)
    return markdown_table(["measure", "value"], rows, align="ll")
