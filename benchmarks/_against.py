"""Another checkout's code beside this tree's, in one process: the harness of the benchmarks
that time a step of both versions on the same input at every call (`--against CHECKOUT`).

The other checkout's package is copied under another name, so both import side by side; each
patched step runs the other's version first, then this tree's, on the same input, and the
script stops if their outputs differ.
"""

from __future__ import annotations

import argparse
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

from _docs import markdown_table, write_section

from distillguard.detect import scan


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
    """CPU seconds per step and version: of the calling thread (`thread=True`, when the log is
    read in another thread meanwhile) or of the process."""

    def __init__(self, thread: bool = False) -> None:
        self._now = time.thread_time if thread else time.process_time
        self.seconds: dict[tuple[str, str], float] = {}
        self.calls: dict[str, int] = {}

    def time(self, step: str, version: str, fn: Callable[[], Any]) -> Any:
        start = self._now()
        out = fn()
        key = (step, version)
        self.seconds[key] = self.seconds.get(key, 0.0) + self._now() - start
        if version == "this":
            self.calls[step] = self.calls.get(step, 0) + 1
        return out


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
    for step, calls in clock.calls.items():
        theirs, ours = clock.seconds[(step, "other")], clock.seconds[(step, "this")]
        rows.append([step, f"{calls:,}", f"{theirs:.2f}", f"{ours:.2f}",
                     f"{ours / max(theirs, 1e-9):.2f}"])
    table = markdown_table(["step", "calls", f"CPU s, {args.against.name}", "CPU s, this tree",
                            "ratio"], rows)
    head = (f"{args.log.name}: one scan ({total:.0f} s CPU in all, both versions included), "
            f"each step run by both versions on the same {what} at every call, equal outputs")
    print(f"{head}; load average {os.getloadavg()[0]:.1f}")
    print(table)
    write_section(script, title, f"{head}.\n\n{table}")
