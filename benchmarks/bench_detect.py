"""Scan throughput: the default detector against a plain DuckDB `GROUP BY account_id` floor.

    python benchmarks/bench_detect.py                 # 1M, 3M and 10M events
    python benchmarks/bench_detect.py --events 1000000 --workdir /tmp/dg-bench

For each size it simulates the default scenario once (kept in --workdir), then times, in the
same process: the floor (DuckDB counting events per account over the same Parquet files, which
reads no text) and the full scan (signals from the texts, replay every 15 minutes of log time,
campaigns, evidence). Prints events/s, the ratio to the floor, and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import duckdb

from distillguard.detect import scan
from distillguard.simulate import simulate
from distillguard.traffic import TrafficLog


def _log(workdir: Path, events: int) -> Path:
    path = workdir / f"log-{events}"
    if not (path / "labels.parquet").exists():
        simulate(path, seed=0, scenario=None, events=events)
    return path


def _floor(log_dir: Path) -> float:
    con = duckdb.connect()
    TrafficLog(log_dir).duckdb_view(con, "events", "events")
    start = time.perf_counter()
    con.execute("SELECT account_id, count(*) FROM events GROUP BY account_id").fetchall()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="1000000,3000000,10000000")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distillguard-bench"))
    args = parser.parse_args()
    print(f"{'events':>12} {'floor s':>9} {'scan s':>9} {'events/s':>11} {'x floor':>9} {'peak GiB':>9}")
    for n in [int(x) for x in args.events.split(",")]:
        log_dir = _log(args.workdir, n)
        rows = sum(f.metadata.num_rows for f in _parquet_files(log_dir))
        floor = _floor(log_dir)
        start = time.perf_counter()
        scan(log_dir, args.workdir / f"verdicts-{n}")
        took = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{rows:>12,} {floor:>9.2f} {took:>9.1f} {rows / took:>11,.0f} {took / floor:>9.0f} {peak:>9.1f}")


def _parquet_files(log_dir: Path) -> list:  # type: ignore[type-arg]
    import pyarrow.parquet as pq

    return [pq.ParquetFile(p) for p in TrafficLog(log_dir).files("events")]


if __name__ == "__main__":
    main()
