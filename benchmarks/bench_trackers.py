"""What the decision-step trackers cost: this tree's against another checkout's, in one scan.

    python benchmarks/bench_trackers.py --log /work/fm/default-s7-e300000 --against /tmp/base

Scans the log once with this tree's detector. At every decision, the other checkout's version
(its package copied under another name) and this tree's of three steps run on the same state,
which first alternating from call to call, each timed in CPU seconds of this process:
`KeyProfileTracker.update` (each version keeps its own tracker; the profiles must be equal),
`account_clocks` (the synchronised clocks; equal within 1e-12) and `LinkTracker._union` (the
other's on a copy of the tracker's components; the components and spanning forest must be
equal). Prints the CPU seconds, the ratios (of the sums and the median per call) and the load
average (the machine is shared), and writes the table to docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import importlib
from types import ModuleType
from typing import Any

import numpy as np
from _against import StepClock, steps_against

from distillguard.detect import _links, _profile, _sync


def _patch(other: ModuleType, clock: StepClock) -> None:
    old_profile = importlib.import_module(f"{other.__name__}._profile")
    old_sync = importlib.import_module(f"{other.__name__}._sync")
    old_links = importlib.import_module(f"{other.__name__}._links")
    new_update = _profile.KeyProfileTracker.update
    shadows: dict[int, Any] = {}

    def update(self: _profile.KeyProfileTracker, *args: Any) -> np.ndarray:
        shadow = shadows.setdefault(id(self), old_profile.KeyProfileTracker())
        want, got = clock.both("KeyProfileTracker.update", lambda: shadow.update(*args),
                               lambda: new_update(self, *args))
        if not np.array_equal(got, want):
            raise SystemExit("KeyProfileTracker.update: the two versions' profiles differ")
        return got

    new_clocks = _sync.account_clocks

    def clocks(*args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        want, got = clock.both("account_clocks", lambda: old_sync.account_clocks(*args),
                               lambda: new_clocks(*args))
        for a, b in zip(got, want, strict=True):
            if not np.allclose(a, b, rtol=0, atol=1e-12):
                raise SystemExit("account_clocks: the two versions differ")
        return got

    new_union = _links.LinkTracker._union

    def union(self: _links.LinkTracker, *args: Any) -> None:
        twin = copy.copy(self)
        twin.comp, twin.key_comp = self.comp.copy(), self.key_comp.copy()
        clock.both("LinkTracker._union", lambda: old_links.LinkTracker._union(twin, *args),
                   lambda: new_union(self, *args))
        same = (np.array_equal(twin.comp, self.comp) and np.array_equal(twin.key_comp,
                                                                         self.key_comp)
                and all(np.array_equal(a, b) for a, b in zip(twin.forest, self.forest,
                                                             strict=True)))
        if not same:
            raise SystemExit("LinkTracker._union: the two versions' components differ")

    _profile.KeyProfileTracker.update = update  # type: ignore[method-assign]
    _sync.account_clocks = clocks
    _links.LinkTracker._union = union  # type: ignore[method-assign]


if __name__ == "__main__":
    steps_against(__file__, "Decision-step trackers against another checkout", "state",
                  "detect/_profile.py", _patch)
