"""What building the verdicts table costs: this tree's `verdict_table` against another
checkout's, in one scan.

    python benchmarks/bench_verdicts.py --log /work/dg-bench/seed7-1m --against /work/main

Scans the log once with this tree's detector; at its end both versions of `verdict_table`
build the table from the same state and assessment, ROUNDS times, alternating which goes
first, each timed in CPU seconds of this process. The tables must be equal. Prints the CPU
seconds, the ratio and the load average (the machine is shared), and writes the table to
docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pyarrow as pa
from _against import StepClock, steps_against

from distillguard.detect import _replay

#: Times each version builds the table (the first of each pair alternates).
ROUNDS = 4


def _patch(other: ModuleType, clock: StepClock) -> None:
    old_output = importlib.import_module(f"{other.__name__}._output")
    new_table = _replay.verdict_table

    def verdict_table(*args: Any) -> pa.Table:
        got: pa.Table | None = None
        for r in range(ROUNDS):
            order = ("other", "this") if r % 2 == 0 else ("this", "other")
            for version in order:
                fn = old_output.verdict_table if version == "other" else new_table
                out = clock.time("verdict_table", version, lambda fn=fn: fn(*args))
                if got is None:
                    got = out
                elif not out.equals(got):
                    raise SystemExit("verdict_table: the two versions' tables differ")
        assert got is not None
        return got

    _replay.verdict_table = verdict_table  # type: ignore[assignment]


if __name__ == "__main__":
    steps_against(__file__, "The verdicts table against another checkout", "state", "detect/_output.py",
                  _patch)
