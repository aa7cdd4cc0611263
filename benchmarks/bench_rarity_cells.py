"""What the rarity and cell looks cost: this tree's against another checkout's, in one scan.

    git -C /work/main archive HEAD | tar -x -C /tmp/main   # the other checkout
    python benchmarks/bench_rarity_cells.py --log /work/dg-bench/seed7-1m --against /tmp/main

Scans the log once with this tree's detector. At every decision, the other checkout's version
(its package copied under another name) and this tree's of two steps run on the same state,
each timed in CPU seconds of the replay's thread: `RarityTracker.update` and
`CellTracker.update`. Each version keeps its own tracker (the other's is a shadow fed the same
arguments; a version whose key sizes read the pairs by account gets its own index of them);
their answers must be equal, array for array, bit for bit. Which version runs first
alternates from call to call (`StepClock.both`). Prints the CPU seconds,
the ratios and the load average (the machine is shared), and writes the table to
docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import fields
from types import ModuleType
from typing import Any

import numpy as np
from _against import StepClock, steps_against

from distillguard.detect import _cells, _rarity
from distillguard.detect._state import PAIR_ACCOUNT


def _same(got: Any, want: Any) -> bool:
    """Equal dataclass answers: every field, arrays bit for bit (NaN equal to NaN)."""
    for f in fields(got):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(a, np.ndarray):
            if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                return False
        elif a != b:
            return False
    return True


def _both(clock: StepClock, step: str, other: Any, this: Any) -> Any:
    """Both versions on the same state (`StepClock.both`: which first alternates), their
    answers equal."""
    want, got = clock.both(step, other, this)
    if not _same(got, want):
        raise SystemExit(f"{step}: the two versions' answers differ at call {clock.calls(step)}")
    return got


def _takes_by_acct(rarity: ModuleType) -> bool:
    """Whether a version's `RarityTracker.update` takes the pair index by account."""
    return "by_acct" in inspect.signature(rarity.RarityTracker.update).parameters


def _patch(other: ModuleType, clock: StepClock) -> None:
    old_rarity = importlib.import_module(f"{other.__name__}._rarity")
    old_cells = importlib.import_module(f"{other.__name__}._cells")
    new_rarity, new_cells = _rarity.RarityTracker.update, _cells.CellTracker.update
    shadows: dict[int, Any] = {}

    old_links = importlib.import_module(f"{other.__name__}._links")
    by_acct: dict[int, Any] = {}

    def rarity(self: _rarity.RarityTracker, *args: Any) -> _rarity.Rarity:
        shadow = shadows.setdefault(id(self), old_rarity.RarityTracker())
        # (A version whose key sizes read the pairs by account too gets its own index.)
        theirs = args
        if _takes_by_acct(old_rarity) and len(args) == 5:
            theirs = (*args, by_acct.setdefault(id(self), old_links.PairIndex(PAIR_ACCOUNT)))
        return _both(clock, "RarityTracker.update", lambda: shadow.update(*theirs),
                     lambda: new_rarity(self, *args))  # type: ignore[no-any-return]

    def cells(self: _cells.CellTracker, *args: Any) -> _cells.Cells:
        shadow = shadows.setdefault(id(self), old_cells.CellTracker())
        return _both(clock, "CellTracker.update", lambda: shadow.update(*args),
                     lambda: new_cells(self, *args))  # type: ignore[no-any-return]

    _rarity.RarityTracker.update = rarity  # type: ignore[method-assign]
    _cells.CellTracker.update = cells  # type: ignore[method-assign]


if __name__ == "__main__":
    steps_against(__file__, "Rarity and cell looks against another checkout", "state",
                  "detect/_rarity.py", _patch, thread=True)
