"""What the replay's pair selections and window folds cost: this tree's against another
checkout's, in one scan.

    python benchmarks/bench_scan_steps.py --log /work/fm/default-s7-e300000 --against /tmp/base

Scans the log once with this tree's detector. At every call, the other checkout's version and
this tree's of two steps run on the same input, the other's first, each timed in CPU seconds
of the replay's thread: `PairIndex.select` (each version keeps its own index of the same pairs; the
selections must be equal) and the window folds of `DetectorState.apply` whose rows are
distinct (per-account counters, hour cells, key traffic: `add_unique_rows`/`add_unique_cells`
against the other's `np.add.at`/`add_rows`/`add_cells` on the same array, the rows put back
between them; the rows must come out equal). Prints the CPU seconds, the ratios and the load
average (the machine is shared), and writes the table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _docs import markdown_table, write_section
from bench_trackers import _load_other

from distillguard.detect import _links, _state, scan


class _Clock:
    """CPU seconds of the calling thread per step and version (the log is read and its
    signals computed in another thread meanwhile)."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = {}
        self.calls: dict[str, int] = {}

    def time(self, step: str, version: str, fn: Any) -> Any:
        start = time.thread_time()
        out = fn()
        key = (step, version)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.thread_time() - start
        if version == "this":
            self.calls[step] = self.calls.get(step, 0) + 1
        return out


def _patch(other: Any, clock: _Clock) -> None:
    old_links = importlib.import_module(f"{other.__name__}._links")
    old_state = importlib.import_module(f"{other.__name__}._state")
    new_select = _links.PairIndex.select
    shadows: dict[int, Any] = {}

    def select(self: _links.PairIndex, pairs: np.ndarray, mask: np.ndarray,
               ordered: bool = True) -> np.ndarray:
        shadow = shadows.setdefault(id(self), old_links.PairIndex(self.column))
        want = clock.time("PairIndex.select", "other",
                          lambda: shadow.select(pairs, mask, ordered))
        got: np.ndarray = clock.time("PairIndex.select", "this",
                                     lambda: new_select(self, pairs, mask, ordered))
        if not np.array_equal(got, want):
            raise SystemExit("PairIndex.select: the two versions' selections differ")
        return got

    new_rows, new_cells = _state.add_unique_rows, _state.add_unique_cells

    def old_rows(a: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        if a.ndim == 1:
            np.add.at(a, rows, values)
        else:
            old_state.add_rows(a, rows, values)

    def twice(step: str, index: Any, old: Any, new: Any) -> None:
        before = a_of(index).copy()
        clock.time(step, "other", old)
        want = a_of(index).copy()
        put(index, before)
        clock.time(step, "this", new)
        if not np.array_equal(a_of(index), want):
            raise SystemExit(f"{step}: the two versions' sums differ")

    def a_of(index: Any) -> np.ndarray:
        a, at = index
        out: np.ndarray = a[at]
        return out

    def put(index: Any, values: np.ndarray) -> None:
        a, at = index
        a[at] = values

    def rows(a: np.ndarray, r: np.ndarray, values: np.ndarray) -> None:
        twice("window folds (distinct rows)", (a, r), lambda: old_rows(a, r, values),
              lambda: new_rows(a, r, values))

    def cells(a: np.ndarray, r: np.ndarray, c: np.ndarray, values: np.ndarray) -> None:
        twice("window folds (distinct rows)", (a, (r, c)),
              lambda: old_state.add_cells(a, r, c, values), lambda: new_cells(a, r, c, values))

    _links.PairIndex.select = select  # type: ignore[method-assign]
    _state.add_unique_rows = rows
    _state.add_unique_cells = cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--against", type=Path, required=True,
                        help="another checkout (e.g. `git archive` of main into a folder)")
    args = parser.parse_args()
    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp:
        _patch(_load_other(args.against, Path(tmp)), clock)
        start = time.process_time()
        scan(args.log, Path(tmp) / "out")
        total = time.process_time() - start
    rows = []
    for step, calls in clock.calls.items():
        theirs, ours = clock.seconds[(step, "other")], clock.seconds[(step, "this")]
        rows.append([step, f"{calls:,}", f"{theirs:.2f}", f"{ours:.2f}",
                     f"{ours / max(theirs, 1e-9):.2f}"])
    load = os.getloadavg()[0]
    table = markdown_table(["step", "calls", f"CPU s, {args.against.name}", "CPU s, this tree",
                            "ratio"], rows)
    head = (f"{args.log.name}: one scan ({total:.0f} s CPU in all, both versions included), "
            "each step run by both versions on the same input at every call, equal outputs")
    print(f"{head}; load average {load:.1f}")
    print(table)
    write_section(__file__, "Pair selections and window folds against another checkout",
                  f"{head}.\n\n{table}")


if __name__ == "__main__":
    main()
