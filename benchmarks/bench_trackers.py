"""What the decision-step trackers cost: this tree's against another checkout's, in one scan.

    python benchmarks/bench_trackers.py --log /work/fm/default-s7-e300000 --against /tmp/base

Scans the log once with this tree's detector. At every decision, the other checkout's version
(its package copied under another name) and this tree's of three steps run on the same state,
the other's first, each timed in CPU seconds of this process: `KeyProfileTracker.update` (each
version keeps its own tracker; the profiles must be equal), `account_clocks` (the synchronised
clocks; equal within 1e-12) and `LinkTracker._union` (the other's on a copy of the tracker's
components; the components and spanning forest must be equal). Prints the CPU seconds, the
ratios and the load average (the machine is shared), and writes the table to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _docs import markdown_table, write_section

from distillguard.detect import _links, _profile, _sync, scan

_OTHER = "distillguard_trackers_against"


def _load_other(checkout: Path, into: Path) -> ModuleType:
    """The other checkout's `detect` package, copied into `into` under `_OTHER`."""
    source = checkout / "src" / "distillguard"
    if not (source / "detect" / "_profile.py").is_file():
        raise SystemExit(f"--against {checkout}: no src/distillguard/detect/_profile.py there")
    target = into / _OTHER
    shutil.copytree(source, target)
    word = re.compile(r"\bdistillguard\b")
    for path in target.rglob("*.py"):
        path.write_text(word.sub(_OTHER, path.read_text(encoding="utf-8")), encoding="utf-8")
    sys.path.insert(0, str(into))
    return importlib.import_module(f"{_OTHER}.detect")


class _Clock:
    """CPU seconds per step and version."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = {}
        self.calls: dict[str, int] = {}

    def time(self, step: str, version: str, fn: Callable[[], Any]) -> Any:
        start = time.process_time()
        out = fn()
        key = (step, version)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.process_time() - start
        if version == "this":
            self.calls[step] = self.calls.get(step, 0) + 1
        return out


def _patch(other: ModuleType, clock: _Clock) -> None:
    old_profile = importlib.import_module(f"{other.__name__}._profile")
    old_sync = importlib.import_module(f"{other.__name__}._sync")
    old_links = importlib.import_module(f"{other.__name__}._links")
    new_update = _profile.KeyProfileTracker.update
    shadows: dict[int, Any] = {}

    def update(self: _profile.KeyProfileTracker, *args: Any) -> np.ndarray:
        shadow = shadows.setdefault(id(self), old_profile.KeyProfileTracker())
        want = clock.time("KeyProfileTracker.update", "other", lambda: shadow.update(*args))
        got: np.ndarray = clock.time("KeyProfileTracker.update", "this",
                                     lambda: new_update(self, *args))
        if not np.array_equal(got, want):
            raise SystemExit("KeyProfileTracker.update: the two versions' profiles differ")
        return got

    new_clocks = _sync.account_clocks

    def clocks(*args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        want = clock.time("account_clocks", "other", lambda: old_sync.account_clocks(*args))
        got: tuple[np.ndarray, np.ndarray, np.ndarray] = clock.time(
            "account_clocks", "this", lambda: new_clocks(*args))
        for a, b in zip(got, want, strict=True):
            if not np.allclose(a, b, rtol=0, atol=1e-12):
                raise SystemExit("account_clocks: the two versions differ")
        return got

    new_union = _links.LinkTracker._union

    def union(self: _links.LinkTracker, *args: Any) -> None:
        twin = copy.copy(self)
        twin.comp, twin.key_comp = self.comp.copy(), self.key_comp.copy()
        clock.time("LinkTracker._union", "other",
                   lambda: old_links.LinkTracker._union(twin, *args))
        clock.time("LinkTracker._union", "this", lambda: new_union(self, *args))
        same = (np.array_equal(twin.comp, self.comp) and np.array_equal(twin.key_comp,
                                                                         self.key_comp)
                and all(np.array_equal(a, b) for a, b in zip(twin.forest, self.forest,
                                                             strict=True)))
        if not same:
            raise SystemExit("LinkTracker._union: the two versions' components differ")

    _profile.KeyProfileTracker.update = update  # type: ignore[method-assign]
    _sync.account_clocks = clocks
    _links.LinkTracker._union = union  # type: ignore[method-assign]


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
            "each step run by both versions on the same state at every call, equal outputs")
    print(f"{head}; load average {load:.1f}")
    print(table)
    write_section(__file__, "Decision-step trackers against another checkout", f"{head}.\n\n{table}")


if __name__ == "__main__":
    main()
