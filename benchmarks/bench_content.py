"""What the content model costs the signals pass: `event_signals` with it and without it.

    python benchmarks/bench_content.py --log /tmp/dg-seed7          # an existing log
    python benchmarks/bench_content.py --events 300000 --workdir /tmp/dg-bench

Reads the log's events once (the text columns the signals need), trains the content model
(timed on its own: once per process), then times `event_signals` over the same batches with
the model and with a stand-in that returns zeros, alternately, best of --repeat, in this
process. Prints CPU seconds of each (this thread; the scan runs the signals in a background
thread), their ratio and the extra CPU per million events, and the load average (the machine
is shared).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from distillguard.detect import _signatures
from distillguard.detect._content import content_model
from distillguard.detect._stream import SIGNAL_COLUMNS
from distillguard.simulate import simulate
from distillguard.traffic import TrafficLog


class _Zeros:
    def probability(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros(len(texts), np.float32)


def _batches(log: Path) -> list[pl.DataFrame]:
    out = []
    for batch in TrafficLog(log).batches("events", columns=SIGNAL_COLUMNS, batch_size=200_000):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        out.append(frame)
    return out


def _cpu(batches: list[pl.DataFrame]) -> float:
    start = time.thread_time()
    for b in batches:
        _signatures.event_signals(b)
    return time.thread_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distillguard-bench"))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    log = args.log
    if log is None:
        log = args.workdir / f"log-{args.events}"
        if not (log / "labels.parquet").exists():
            simulate(log, seed=0, scenario=None, events=args.events)
    batches = _batches(log)
    events = sum(b.height for b in batches)
    start = time.thread_time()
    model = content_model()
    train = time.thread_time() - start
    with_model: list[float] = []
    without: list[float] = []
    # The signals look the model up through their module's global; swap it there.
    # (Through the module's namespace: the name is imported there, not exported.)
    space = vars(_signatures)
    real = space["content_model"]
    for _ in range(args.repeat):
        space["content_model"] = lambda: model
        with_model.append(_cpu(batches))
        space["content_model"] = _Zeros
        without.append(_cpu(batches))
    space["content_model"] = real
    a, b = min(with_model), min(without)
    print(f"{events:,} events; content model trained in {train:.1f} s CPU (once per process)")
    print(f"signals with the content model    {a:7.1f} s CPU")
    print(f"signals without (zeros)           {b:7.1f} s CPU")
    print(f"ratio {a / b:.2f}; extra {1e6 * (a - b) / events:.1f} s CPU per million events; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
