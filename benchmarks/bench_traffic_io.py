"""Traffic log I/O speed: write N synthetic events, then read and validate them in batches.

    python benchmarks/bench_traffic_io.py [N] [--jsonl] [--dir DIR]

Prints events/s for each step and the ratio against a plain
`pyarrow.parquet.read_table` of the same file, timed in the same run.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _docs import markdown_table, write_section

from distillguard.traffic import LogWriter, TrafficLog, validate_log

WORDS = [
    "solve",
    "explain",
    "the",
    "step",
    "by",
    "step",
    "proof",
    "function",
    "python",
    "write",
    "test",
    "a",
    "of",
    "code",
    "list",
    "sort",
    "reason",
    "about",
    "why",
    "how",
    "what",
    "is",
    "derivative",
    "integral",
    "prime",
    "number",
    "graph",
    "tree",
    "recursion",
    "translate",
    "summarise",
    "review",
    "bug",
    "fix",
    "optimise",
    "query",
    "table",
    "join",
    "rubric",
    "grade",
    "answer",
]


def _pool(rng: np.random.Generator, n: int, lo: int, hi: int) -> pa.Array:
    out = []
    for _ in range(n):
        k = int(rng.integers(lo, hi))
        out.append(" ".join(rng.choice(WORDS, size=k)))
    return pa.array(out)


def synthetic_events(n: int, chunk: int, seed: int = 0) -> Iterator[pa.Table]:
    """Events in time order, texts drawn from pools (prompt ~40 words, response ~160)."""
    rng = np.random.default_rng(seed)
    prompts, responses = _pool(rng, 4000, 10, 70), _pool(rng, 1000, 60, 260)
    accounts = pa.array([f"acct-{i:06d}" for i in range(max(1, n // 200))])
    models = pa.array(["model-large", "model-small", "model-new"])
    t0 = np.datetime64("2026-03-01T00:00:00", "us").astype(np.int64)
    span = 14 * 86_400 * 10**6
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ids = pc.binary_join_element_wise(
            "evt-", pc.cast(pa.array(np.arange(start, start + m)), pa.string()), ""
        )
        ts = t0 + (np.arange(start, start + m) * span) // n
        acct = accounts.take(pa.array(rng.integers(0, len(accounts), m)))
        prompt = pc.binary_join_element_wise(
            prompts.take(pa.array(rng.integers(0, len(prompts), m))), ids, " #"
        )
        yield pa.table(
            {
                "event_id": ids,
                "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "account_id": acct,
                "key_id": pc.binary_join_element_wise(acct, "k1", "/"),
                "ip": pa.array(np.char.add("10.0.0.", (rng.integers(0, 250, m)).astype(str))),
                "user_agent": pa.array(["openai-python/1.30"] * m),
                "endpoint": pa.array(["chat.completions"] * m),
                "model": models.take(pa.array(rng.integers(0, 3, m))),
                "prompt": prompt,
                "turns": pa.array(rng.integers(1, 6, m).astype(np.int32)),
                "response": responses.take(pa.array(rng.integers(0, len(responses), m))),
                "prompt_tokens": pa.array(rng.integers(10, 400, m).astype(np.int32)),
                "completion_tokens": pa.array(rng.integers(50, 2000, m).astype(np.int32)),
                "temperature": pa.array(rng.random(m).astype(np.float32)),
                "status": pa.array(np.full(m, 200, np.int16)),
                "latency_ms": pa.array((rng.random(m) * 3000).astype(np.float32)),
            }
        )


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(label: str, n: int, fn, steps: list[tuple[str, float]]):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    steps.append((label, dt))
    print(
        f"{label:<44} {dt:7.2f} s {n / dt:>12,.0f} events/s   peak RSS so far {_peak_mb():,.0f} MB",
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "n", nargs="?", type=int, default=1_000_000, help="events to write (default 1,000,000)"
    )
    ap.add_argument("--jsonl", action="store_true", help="also time the JSONL.gz path")
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir, removed)"
    )
    ap.add_argument("--part-rows", type=int, default=2_000_000)
    args = ap.parse_args()
    n: int = args.n
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-traffic-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"{n:,} events in {root}")
    steps: list[tuple[str, float]] = []
    try:
        pq_dir = root / "parquet"
        # Only the writer's own time counts, not making the synthetic chunks.
        spent = 0.0
        with LogWriter(pq_dir, part_rows=args.part_rows) as w:
            for chunk in synthetic_events(n, 100_000):
                t = time.perf_counter()
                w.write("events", chunk)
                spent += time.perf_counter() - t
            t = time.perf_counter()
        spent += time.perf_counter() - t
        steps.append(("write Parquet (LogWriter)", spent))
        print(f"{'write Parquet (LogWriter)':<44} {spent:7.2f} s {n / spent:>12,.0f} events/s")
        files = TrafficLog(pq_dir).files("events")
        print(f"  {len(files)} file(s), {sum(f.stat().st_size for f in files) / 1e6:,.0f} MB")

        # The library's paths first, so "peak RSS so far" shows their memory, not the baseline's.
        def stream(log_dir: Path, columns: list[str] | None = None) -> int:
            return sum(b.num_rows for b in TrafficLog(log_dir).batches("events", columns))

        assert (
            _timed("TrafficLog.batches (all columns, typed)", n, lambda: stream(pq_dir), steps) == n
        )
        _timed(
            "TrafficLog.batches (account_id, ts)",
            n,
            lambda: stream(pq_dir, ["account_id", "ts"]),
            steps,
        )
        report = _timed("validate_log", n, lambda: validate_log(pq_dir), steps)
        assert report.events == n and report.ok, report.problems

        def duck() -> int:
            con = duckdb.connect()
            TrafficLog(pq_dir).duckdb_view(con, "events")
            (k,) = con.execute("SELECT count(DISTINCT account_id) FROM events").fetchone()  # type: ignore[misc]
            return int(k)

        _timed("duckdb_view + count(DISTINCT account_id)", n, duck, steps)

        if args.jsonl:
            j_dir = root / "jsonl"

            def write_j() -> None:
                with LogWriter(j_dir, fmt="jsonl.gz") as w:
                    for b in TrafficLog(pq_dir).batches("events", batch_size=100_000):
                        w.write("events", b)

            _timed("write JSONL.gz (LogWriter)", n, write_j, steps)
            print(f"  {(j_dir / 'events.jsonl.gz').stat().st_size / 1e6:,.0f} MB")
            _timed("TrafficLog.batches over JSONL.gz", n, lambda: stream(j_dir), steps)
            _timed("validate_log over JSONL.gz", n, lambda: validate_log(j_dir), steps)

        # Baseline: a plain read_table of each file in turn (one at a time keeps memory
        # bounded for 10M events), after a first untimed pass warms the page cache.
        def baseline() -> int:
            return sum(pq.read_table(f).num_rows for f in files)

        baseline()
        base_steps: list[tuple[str, float]] = []
        _timed("baseline: pyarrow.parquet.read_table", n, baseline, base_steps)
        base = base_steps[0][1]
        print("\ntime relative to the baseline (same files, same run):")
        for label, dt in steps:
            print(f"  {label:<44} {dt / base:6.2f}x")
        rows = [[label, f"{dt:.1f} s", f"{dt / base:.2f}x"] for label, dt in steps + base_steps]
        write_section(__file__, "Traffic log I/O",
                      f"{n:,} events; ratios against `pyarrow.parquet.read_table` of the same files in "
                      "the same run (one part at a time, page cache warm).\n\n"
                      + markdown_table(["step", "time", "vs read_table"], rows))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
