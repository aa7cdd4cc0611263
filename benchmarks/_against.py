"""Another checkout's code beside this tree's, in one process: the harness of the benchmarks
that time a step of both versions on the same input at every call (`--against CHECKOUT`).

The other checkout's package is copied under another name, so both import side by side; each
patched step runs both versions on the same input, the order alternating from call to call
(`in_turn`: neither always finds the caches the other warmed), and the script stops if their
outputs differ. The ratios are of the summed CPU seconds and, per call, their median.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from _docs import markdown_table, write_section

from distillguard.detect import scan

T = TypeVar("T")
VERSIONS = ("other", "this")


def in_turn(names: Sequence[str], round_: int) -> list[str]:
    """The order to run `names` in at round `round_` (0, 1, ...): rotated by one each round, so
    that each runs first as often as the others (two names: alternately)."""
    k = round_ % max(len(names), 1)
    return [*names[k:], *names[:k]]


def rounds_in_turn(rounds: int, runs: Mapping[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Each of `runs` called `rounds` times, the order turning every round (`in_turn`): per
    name, its outputs in round order."""
    out: dict[str, list[T]] = {name: [] for name in runs}
    for r in range(rounds):
        for name in in_turn(list(runs), r):
            out[name].append(runs[name]())
    return out


def median_cpu(runs: Mapping[str, Callable[[], T]], rounds: int,
               ) -> tuple[dict[str, float], dict[str, T]]:
    """Per run: the median CPU seconds of this process over `rounds` rounds, which first
    turning every round (`rounds_in_turn`), and its last output (to compare)."""
    last: dict[str, T] = {}

    def timed(name: str) -> Callable[[], float]:
        def run() -> float:
            start = time.process_time()
            last[name] = runs[name]()
            return time.process_time() - start
        return run

    seconds = rounds_in_turn(rounds, {name: timed(name) for name in runs})
    return {name: statistics.median(v) for name, v in seconds.items()}, last


def load_checkout(checkout: Path, into: Path, alias: str, must_have: str) -> ModuleType:
    """The other checkout's `distillguard` package, copied into `into` as `alias`; `must_have`
    is a file under src/distillguard/ that says the folder is a checkout."""
    source = checkout / "src" / "distillguard"
    if not (source / must_have).is_file():
        raise SystemExit(f"--against {checkout}: no src/distillguard/{must_have} there")
    target = into / alias
    shutil.copytree(source, target)
    word = re.compile(r"\bdistillguard\b")
    for path in target.rglob("*.py"):
        path.write_text(word.sub(alias, path.read_text(encoding="utf-8")), encoding="utf-8")
    sys.path.insert(0, str(into))
    return importlib.import_module(alias)


class StepClock:
    """CPU seconds per step, version and call: of the calling thread (`thread=True`, when the
    log is read in another thread meanwhile) or of the process."""

    def __init__(self, thread: bool = False) -> None:
        self._now = time.thread_time if thread else time.process_time
        self.per_call: dict[tuple[str, str], list[float]] = {}

    def time(self, step: str, version: str, fn: Callable[[], T]) -> T:
        """`fn()`, its CPU seconds added to (`step`, `version`) as one call."""
        start = self._now()
        out = fn()
        self.per_call.setdefault((step, version), []).append(self._now() - start)
        return out

    def calls(self, step: str) -> int:
        """How many calls of `step` this tree's version has had."""
        return len(self.per_call.get((step, "this"), []))

    def order(self, step: str) -> list[str]:
        """The versions in the order to run them at `step`'s next call (`in_turn`)."""
        return in_turn(VERSIONS, self.calls(step))

    def both(self, step: str, other: Callable[[], Any], this: Callable[[], T]) -> tuple[Any, T]:
        """Both versions of `step` on the same input, in this call's order: (other's output,
        this tree's). The two must not touch one state (each keeps its own)."""
        runs: dict[str, Callable[[], Any]] = {"other": other, "this": this}
        out = {version: self.time(step, version, runs[version]) for version in self.order(step)}
        return out["other"], out["this"]

    def seconds(self, step: str, version: str) -> float:
        return sum(self.per_call.get((step, version), []))

    def median_ratio(self, step: str) -> float:
        """The median over calls of this tree's CPU seconds over the other's (calls the clock
        saw take no time at all in the other version are left out; NaN when none is left)."""
        pairs = zip(self.per_call.get((step, "other"), []), self.per_call.get((step, "this"), []),
                    strict=True)
        ratios = [ours / theirs for theirs, ours in pairs if theirs > 0]
        return statistics.median(ratios) if ratios else float("nan")

    def steps(self) -> list[str]:
        """The steps timed, in the order first seen."""
        return list(dict.fromkeys(step for step, _ in self.per_call))


def steps_against(script: str, title: str, what: str, must_have: str,
                  patch: Callable[[ModuleType, StepClock], None], thread: bool = False) -> None:
    """The command line of a step benchmark: scan `--log` once with `patch` applied (it gets
    the other checkout's `detect` package and the clock), print the CPU seconds per step and
    version and their ratio, and write the table to docs/benchmarks.md under `title`. `what`
    says what both versions are run on ("input", "state")."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--against", type=Path, required=True,
                        help="another checkout (e.g. `git archive` of main into a folder)")
    args = parser.parse_args()
    clock = StepClock(thread)
    alias = f"distillguard_{Path(script).stem}_against"
    with tempfile.TemporaryDirectory() as tmp:
        other = load_checkout(args.against, Path(tmp), alias, must_have)
        patch(importlib.import_module(f"{other.__name__}.detect"), clock)
        start = time.process_time()
        scan(args.log, Path(tmp) / "out")
        total = time.process_time() - start
    rows = []
    for step in clock.steps():
        theirs, ours = clock.seconds(step, "other"), clock.seconds(step, "this")
        rows.append([step, f"{clock.calls(step):,}", f"{theirs:.2f}", f"{ours:.2f}",
                     f"{ours / max(theirs, 1e-9):.2f}", f"{clock.median_ratio(step):.2f}"])
    table = markdown_table(["step", "calls", f"CPU s, {args.against.name}", "CPU s, this tree",
                            "ratio", "median ratio per call"], rows)
    head = (f"{args.log.name}: one scan ({total:.0f} s CPU in all, both versions included), "
            f"each step run by both versions on the same {what} at every call, which first "
            f"alternating from call to call, equal outputs")
    print(f"{head}; load average {os.getloadavg()[0]:.1f}")
    print(table)
    write_section(script, title, f"{head}.\n\n{table}")
