"""The replay's wait on the text signals: this tree against another checkout, in one process.

    python benchmarks/bench_signal_wait.py --log /work/dg-bench/seed7-1m --against /work/main

The other checkout's package is loaded beside this tree's (`_against.load_checkout`).

1. The signals stage: the log's events in the reader's batches (`SIGNAL_BATCH`) reduced by
   `event_signals` with a fresh `TextCache`, as the scan's reader does, by the other version
   and this one alternately (--repeat rounds); their outputs must be equal. CPU seconds of the
   process (its helper threads included) and wall seconds.
2. The reader: the log's chunks as the scan's reader thread delivers them (`log_chunks`: the
   events read from the log and reduced to signals), taken as fast as they come with no
   replay, by each version alternately (--repeat rounds); wall and CPU seconds, the chunks
   must be equal.
3. The scan: the log scanned by each version, in the order other, this, this, other (--scans
   rounds, alternating who goes first), the replay's waits timed: the seconds its loop is
   blocked on the next chunk (the signals read and grouped in the background), at the first
   chunk and at the others. Wall and CPU seconds of each scan; the verdict and campaign tables
   of the two versions must be equal.

Prints the tables with the ratios (this tree / the other) and the load average (the machine
may be shared: runs are alternated so that both versions see the same load), and writes them
to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
from _against import load_checkout
from _docs import markdown_table, write_section
from bench_content import _batches

import distillguard

_ALIAS = "distillguard_signal_wait_against"


class _Waits:
    """The seconds the replay's loop spends in `Future.result` on its prepare thread."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def executor(self) -> type[ThreadPoolExecutor]:
        waits = self.seconds

        class Timed(ThreadPoolExecutor):
            def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
                future = super().submit(fn, *args, **kwargs)
                result = future.result

                def timed(timeout: float | None = None) -> Any:
                    start = time.perf_counter()
                    out = result(timeout)
                    waits.append(time.perf_counter() - start)
                    return out

                future.result = timed  # type: ignore[method-assign]
                return future

        return Timed


def _signals_round(package: ModuleType, batches: list[pl.DataFrame]) -> tuple[float, float, list[pl.DataFrame]]:
    """CPU and wall seconds of one version's signals over the batches, and its output."""
    signatures = importlib.import_module(f"{package.__name__}.detect._signatures")
    cache = importlib.import_module(f"{package.__name__}.detect._text_cache").TextCache()
    cpu, wall = time.process_time(), time.perf_counter()
    out = [signatures.event_signals(b, cache) for b in batches]
    return time.process_time() - cpu, time.perf_counter() - wall, out


def _reader_round(package: ModuleType, log: Path) -> tuple[float, float, list[pl.DataFrame]]:
    """CPU and wall seconds of one version's reader over the whole log, and its chunks."""
    stream = importlib.import_module(f"{package.__name__}.detect._stream")
    replay = importlib.import_module(f"{package.__name__}.detect._replay")
    step = int(importlib.import_module(f"{package.__name__}.detect").load_config(None)
               .replay.cadence_minutes * 60_000_000)
    cpu, wall = time.process_time(), time.perf_counter()
    source = stream.log_chunks(log, step, replay.CHUNK_EVENTS)
    chunks = list(source.chunks) if source is not None else []
    return time.process_time() - cpu, time.perf_counter() - wall, chunks


def _scan_round(package: ModuleType, log: Path, out: Path) -> tuple[dict[str, float], Any]:
    """One scan by `package` with the replay's waits timed: its numbers and its result."""
    replay = importlib.import_module(f"{package.__name__}.detect._replay")
    waits = _Waits()
    plain = replay.ThreadPoolExecutor
    replay.ThreadPoolExecutor = waits.executor()
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        result = importlib.import_module(f"{package.__name__}.detect").scan(log, out)
        numbers = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    finally:
        replay.ThreadPoolExecutor = plain
    numbers["first"] = waits.seconds[0] if waits.seconds else 0.0
    numbers["rest"] = sum(waits.seconds[1:])
    return numbers, result


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs > 0 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--against", type=Path, required=True, help="another checkout")
    parser.add_argument("--repeat", type=int, default=2, help="signals rounds per version")
    parser.add_argument("--scans", type=int, default=1,
                        help="scan rounds (each: both versions, the first alternating)")
    args = parser.parse_args()
    from distillguard.detect._stream import SIGNAL_BATCH

    batches = _batches(args.log, SIGNAL_BATCH)
    events = sum(b.height for b in batches)
    with tempfile.TemporaryDirectory() as tmp:
        other = load_checkout(args.against, Path(tmp), _ALIAS, "detect/_signatures.py")
        versions = {"other": other, "this": distillguard}
        for package in versions.values():  # trained once per process, not timed
            importlib.import_module(f"{package.__name__}.detect._content").content_model()
        sig: dict[str, list[tuple[float, float]]] = {"other": [], "this": []}
        for _ in range(args.repeat):
            outputs = {}
            for name, package in versions.items():
                cpu, wall, outputs[name] = _signals_round(package, batches)
                sig[name].append((cpu, wall))
            if not all(a.equals(b) for a, b in zip(outputs["other"], outputs["this"], strict=True)):
                raise SystemExit("the two versions' signals differ")
        del outputs
        reader: dict[str, list[tuple[float, float]]] = {"other": [], "this": []}
        for i in range(args.repeat):
            chunks = {}
            for name in (["other", "this"] if i % 2 == 0 else ["this", "other"]):
                cpu, wall, chunks[name] = _reader_round(versions[name], args.log)
                reader[name].append((cpu, wall))
            if not all(a.equals(b) for a, b in zip(chunks["other"], chunks["this"], strict=True)):
                raise SystemExit("the two versions' chunks differ")
        del chunks
        scans: dict[str, list[dict[str, float]]] = {"other": [], "this": []}
        for i in range(args.scans):
            order = ["other", "this"] if i % 2 == 0 else ["this", "other"]
            results = {}
            for name in order:
                numbers, results[name] = _scan_round(versions[name], args.log, Path(tmp) / name)
                scans[name].append(numbers)
                print(name, {k: round(v, 1) for k, v in numbers.items()}, flush=True)
            for table in ("verdicts", "campaigns"):
                if not getattr(results["other"], table).equals(getattr(results["this"], table)):
                    raise SystemExit(f"the two versions' {table} differ")
    load = os.getloadavg()[0]
    theirs_cpu, theirs_wall = (min(s[k] for s in sig["other"]) for k in (0, 1))
    ours_cpu, ours_wall = (min(s[k] for s in sig["this"]) for k in (0, 1))
    rows = [["signals stage, CPU s (best)", f"{theirs_cpu:.1f}", f"{ours_cpu:.1f}",
             _ratio(ours_cpu, theirs_cpu)],
            ["signals stage, wall s (best)", f"{theirs_wall:.1f}", f"{ours_wall:.1f}",
             _ratio(ours_wall, theirs_wall)]]
    for k, label in ((0, "reader, CPU s (best)"), (1, "reader, wall s (best)")):
        theirs, ours = min(r[k] for r in reader["other"]), min(r[k] for r in reader["this"])
        rows.append([label, f"{theirs:.1f}", f"{ours:.1f}", _ratio(ours, theirs)])
    labels = {"wall": "scan wall s", "cpu": "scan CPU s", "first": "replay blocked, first chunk, s",
              "rest": "replay blocked, other chunks, s"}
    for i in range(args.scans):
        for key, label in labels.items():
            t, o = scans["other"][i][key], scans["this"][i][key]
            first = "other first" if i % 2 == 0 else "this first"
            rows.append([f"{label} (scan {i + 1}, {first})", f"{t:.1f}", f"{o:.1f}", _ratio(o, t)])
    table = markdown_table(["measure", args.against.name, "this tree", "ratio"], rows)
    head = (f"{args.log.name} ({events:,} events): the signals stage over the reader's batches of "
            f"{SIGNAL_BATCH:,} and the reader's chunks, {args.repeat} alternating rounds each, equal "
            "outputs; "
            + (f"{args.scans} scan round(s) alternating, equal verdicts and campaigns; the "
               "blocked time is the replay loop's wait on its prepare thread; "
               if args.scans else "no scan; ")
            + f"load average {load:.1f} at the end")
    print(head)
    print(table)
    write_section(__file__, "The replay's wait on the text signals", f"{head}.\n\n{table}")


if __name__ == "__main__":
    main()
