"""Ingest throughput and memory: `distillguard ingest --from litellm` on a synthetic spend-log export.

    python benchmarks/bench_ingest.py                  # 100,000 rows
    python benchmarks/bench_ingest.py --rows 1000000 --workdir /tmp/dg-bench-ingest

Writes a LiteLLM_SpendLogs export (JSONL, the shape of `row_to_json`, prompts from the
shipped corpora), then in this process times, alternately, `ingest` (parse, convert,
check, write Parquet) and the baseline of reading the same file with pyarrow's JSON
reader (parse only, the whole file in memory), and prints the best of --repeat runs
of each in CPU time (the machine is shared: wall time says more about the neighbours)
and wall time, their ratio, then the memory each holds at its peak: ingest's Python heap
(tracemalloc, one more run) and the Arrow table the baseline builds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.json as pajson

from distillguard._data import corpora_root
from distillguard.ingest import ingest, open_source


def _prompts() -> list[str]:
    with gzip.open(corpora_root() / "wildchat_1k.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"][:500] for line in fh]


def write_export(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    prompts = _prompts()
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            ts = t0 + timedelta(milliseconds=i * 250)
            prompt = rng.choice(prompts)
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 256, "user": f"customer-{rng.randrange(5000)}"}
            fh.write(json.dumps({
                "request_id": f"req-{i:09d}", "call_type": "acompletion",
                "api_key": f"{rng.randrange(2000):064x}", "spend": 0.0001, "total_tokens": 60,
                "prompt_tokens": 40, "completion_tokens": 20,
                "startTime": ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                "endTime": (ts + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                "request_duration_ms": 1000, "model": "gpt-4o-mini", "model_group": "gpt-4o-mini",
                "user": f"user-{rng.randrange(800)}", "team_id": None, "end_user": body["user"],
                "requester_ip_address": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                "metadata": {}, "status": "success", "messages": body["messages"],
                "response": {"choices": [{"message": {"role": "assistant", "content": "ok"}}]},
                "proxy_server_request": body,
            }) + "\n")


def _timed(fn: object) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()  # type: ignore[operator]
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dg-bench-ingest"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / f"spend_logs_{args.rows}.jsonl"
    if not src.exists():
        write_export(src, args.rows)
    size = src.stat().st_size
    out = args.workdir / "log"

    def run_ingest() -> None:
        shutil.rmtree(out, ignore_errors=True)
        report = ingest(open_source("litellm", src), out)
        assert report.written == args.rows, report

    table_bytes = 0

    def run_baseline() -> None:
        nonlocal table_bytes
        table_bytes = pajson.read_json(src).nbytes

    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, fn in (("ingest", run_ingest), ("pyarrow.json", run_baseline)):
            cpu, wall = _timed(fn)
            if name not in best or cpu < best[name][0]:
                best[name] = (cpu, wall)
    tracemalloc.start()
    run_ingest()
    heap = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{args.rows:,} rows, {size / 2**20:.0f} MiB of JSONL")
    for name, (cpu, wall) in best.items():
        print(f"  {name:13s} {cpu:7.2f} s CPU ({args.rows / cpu:9,.0f} rows/s), {wall:7.2f} s wall")
    ratio = best["ingest"][0] / best["pyarrow.json"][0]
    print(f"  ingest takes {ratio:.1f}x the CPU of parsing alone")
    print(f"  peak memory: ingest's Python heap {heap / 2**20:.0f} MiB (flat in the rows); "
          f"the baseline's table {table_bytes / 2**20:.0f} MiB (the whole file)")


if __name__ == "__main__":
    main()
