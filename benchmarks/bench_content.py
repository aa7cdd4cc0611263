"""What the text signals cost: the content model's share, and this tree against another one.

    python benchmarks/bench_content.py --log /tmp/dg-seed7          # an existing log
    python benchmarks/bench_content.py --events 300000 --workdir /tmp/dg-bench
    python benchmarks/bench_content.py --log LOG --against /path/to/other/checkout

Reads the log's events once (the text columns the signals need), trains the content model
(timed on its own: once per process), then times `event_signals` over the same batches with
the model and with a stand-in that returns zeros, --repeat rounds in this process, which first
alternating per round, the median of each. With --against (another checkout of distillguard,
e.g. a `git worktree` of main), its `event_signals` is loaded beside this tree's (its package
copied under another name) and both are timed the same way over the same batches; their
outputs must be equal. Prints CPU seconds
(this process; polars may use several threads), ratios, CPU per million events and the load
average (the machine is shared), and writes the table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from _against import load_checkout, median_cpu
from _docs import markdown_table, write_section

from distillguard.detect import _signatures
from distillguard.detect._content import content_model
from distillguard.detect._stream import SIGNAL_COLUMNS
from distillguard.simulate import simulate
from distillguard.traffic import TrafficLog

Signals = Callable[[pl.DataFrame], pl.DataFrame]
_OTHER = "distillguard_against"


class _Zeros:
    def probability(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros(len(texts), np.float32)


def _batches(log: Path, size: int = 200_000) -> list[pl.DataFrame]:
    out = []
    for batch in TrafficLog(log).batches("events", columns=SIGNAL_COLUMNS, batch_size=size):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        out.append(frame)
    return out


def _load_other(checkout: Path, into: Path) -> Signals:
    """`event_signals` of another checkout, its content model trained up front."""
    other = load_checkout(checkout, into, _OTHER, "detect/_signatures.py")
    module = importlib.import_module(f"{other.__name__}.detect._signatures")
    importlib.import_module(f"{other.__name__}.detect._content").content_model()
    fn: Signals = module.event_signals
    return fn


def _against(checkout: Path, batches: list[pl.DataFrame], repeat: int) -> tuple[float, float]:
    """Median CPU seconds of the other checkout's signals and of this tree's (`_against.median_cpu`)."""
    with tempfile.TemporaryDirectory() as tmp:
        other = _load_other(checkout, Path(tmp))
        seconds, out = median_cpu(
            {"other": lambda: [other(b) for b in batches],
             "this": lambda: [_signatures.event_signals(b) for b in batches]}, repeat)
        for a, b in zip(out["other"], out["this"], strict=True):
            if not a.equals(b):
                raise SystemExit(f"the signals of {checkout} and of this tree differ")
    return seconds["other"], seconds["this"]


def log_arguments(description: str) -> argparse.ArgumentParser:
    """--log, or a default-scenario log of --events simulated once into --workdir; --repeat."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distillguard-bench"))
    parser.add_argument("--repeat", type=int, default=2)
    return parser


def log_of(args: argparse.Namespace) -> Path:
    """The log the arguments name, simulated first when it is not there."""
    if args.log is not None:
        return Path(args.log)
    log = Path(args.workdir) / f"log-{args.events}"
    if not (log / "labels.parquet").exists():
        simulate(log, seed=0, scenario=None, events=args.events)
    return log


def main() -> None:
    parser = log_arguments(__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    log = log_of(args)
    batches = _batches(log)
    events = sum(b.height for b in batches)
    per_m = 1e6 / max(events, 1)
    start = time.process_time()
    model = content_model()
    train = time.process_time() - start
    # The signals look the model up through their module's global; swap it there.
    # (Through the module's namespace: the name is imported there, not exported.)
    space = vars(_signatures)
    real = space["content_model"]

    def signals_with(model_of: Callable[[], object]) -> Callable[[], list[pl.DataFrame]]:
        def run() -> list[pl.DataFrame]:
            space["content_model"] = model_of
            return [_signatures.event_signals(b) for b in batches]
        return run

    seconds, _ = median_cpu({"with": signals_with(lambda: model), "without":
                             signals_with(_Zeros)}, args.repeat)
    space["content_model"] = real
    a, b = seconds["with"], seconds["without"]
    rows = [["signals with the content model", f"{a:.1f}", f"{a * per_m:.1f}", ""],
            ["signals without it (zeros)", f"{b:.1f}", f"{b * per_m:.1f}", f"{a / b:.2f}"]]
    if args.against is not None:
        theirs, ours = _against(args.against, batches, args.repeat)
        rows += [[f"signals of {args.against.name} (--against)", f"{theirs:.1f}",
                  f"{theirs * per_m:.1f}", ""],
                 ["signals of this tree, equal output", f"{ours:.1f}", f"{ours * per_m:.1f}",
                  f"{ours / theirs:.2f}"]]
    load = os.getloadavg()[0]
    table = markdown_table(["run", "CPU s", "CPU s per 1M events", "ratio to the row above"],
                           rows)
    print(f"{events:,} events ({log.name}); content model trained in {train:.1f} s CPU "
          f"(once per process); median of {args.repeat}; load average {load:.1f}")
    print(table)
    body = (f"{events:,} events ({log.name}), median of {args.repeat} runs in one process, which "
            f"first alternating per run; the content model trained in {train:.1f} s CPU (once per process)."
            f"\n\n{table}")
    write_section(__file__, "Text signals: the content model, and against another checkout",
                  body)


if __name__ == "__main__":
    main()
