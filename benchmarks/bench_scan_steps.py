"""What the replay's pair selections and window folds cost: this tree's against another
checkout's, in one scan.

    python benchmarks/bench_scan_steps.py --log /work/fm/default-s7-e300000 --against /tmp/base

Scans the log once with this tree's detector. At every call, the other checkout's version and
this tree's of two steps run on the same input, which first alternating from call to call,
each timed in CPU seconds of the replay's thread: `PairIndex.select` (each version keeps its
own index of the same pairs; the selections must be equal) and the window folds of
`DetectorState.apply` whose rows are distinct (per-account counters, hour cells, key traffic:
`add_unique_rows`/`add_unique_cells` against the other's `np.add.at`/`add_rows`/`add_cells` on
the same array, the rows put back before each; the rows must come out equal). Prints the CPU
seconds, the ratios (of the sums and the median per call) and the load average (the machine is
shared), and writes the table to docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from _against import StepClock, steps_against

from distillguard.detect import _links, _state


def _patch(other: Any, clock: StepClock) -> None:
    old_links = importlib.import_module(f"{other.__name__}._links")
    old_state = importlib.import_module(f"{other.__name__}._state")
    new_select = _links.PairIndex.select
    shadows: dict[int, Any] = {}

    def select(self: _links.PairIndex, pairs: np.ndarray, mask: np.ndarray,
               ordered: bool = True) -> np.ndarray:
        shadow = shadows.setdefault(id(self), old_links.PairIndex(self.column))
        want, got = clock.both("PairIndex.select", lambda: shadow.select(pairs, mask, ordered),
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
        # Both fold into one array: each starts from the rows as they were (put back untimed).
        before = a_of(index).copy()
        runs, sums = {"other": old, "this": new}, {}
        for version in clock.order(step):
            put(index, before)
            clock.time(step, version, runs[version])
            sums[version] = a_of(index).copy()
        if not np.array_equal(sums["this"], sums["other"]):
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


if __name__ == "__main__":
    steps_against(__file__, "Pair selections and window folds against another checkout",
                  "input", "detect/_links.py", _patch, thread=True)
