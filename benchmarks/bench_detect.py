"""Scan throughput: the default detector against a plain DuckDB `GROUP BY account_id` floor.

    python benchmarks/bench_detect.py                 # 1M, 3M and 10M events
    python benchmarks/bench_detect.py --events 1000000 --workdir /tmp/dg-bench

For each size it simulates the default scenario once (kept in --workdir as `log-N`; a log
made elsewhere can be linked there), then times, in one child process per size: the floor
(DuckDB counting events per account over the same Parquet files, which reads no text) and the
full scan (signals from the texts, replay every 15 minutes of log time, campaigns, evidence).
Prints events/s, the ratio to the floor, the scan's CPU time (user + system, all threads), the
child's peak memory and the load average (the machine is shared: with a load above its two
cores the wall times stretch, the CPU times much less).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from _docs import markdown_table, write_section

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


def _measure(log_dir: Path, out: Path) -> dict[str, float]:
    """Floor and scan of one log, in this process."""
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in TrafficLog(log_dir).files("events"))
    floor = _floor(log_dir)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    scan(log_dir, out)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"rows": rows, "floor": floor, "scan": took, "cpu": cpu,
            "peak": after.ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="1000000,3000000,10000000")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distillguard-bench"))
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child: one log
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(_measure(args.measure, args.workdir)))
        return
    print(f"{'events':>12} {'floor s':>9} {'scan s':>9} {'events/s':>11} {'x floor':>9} "
          f"{'cpu s':>9} {'peak GiB':>9} {'load avg':>9}")
    rows = []
    for n in [int(x) for x in args.events.split(",")]:
        log_dir = _log(args.workdir, n)
        load_before = os.getloadavg()[0]
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(log_dir),
             "--workdir", str(args.workdir / f"verdicts-{n}")],
            check=True, capture_output=True, text=True,
        )
        r = json.loads(child.stdout.strip().splitlines()[-1])
        load = (load_before + os.getloadavg()[0]) / 2
        print(f"{int(r['rows']):>12,} {r['floor']:>9.2f} {r['scan']:>9.1f} "
              f"{r['rows'] / r['scan']:>11,.0f} {r['scan'] / r['floor']:>9.0f} "
              f"{r['cpu']:>9.1f} {r['peak']:>9.1f} {load:>9.1f}", flush=True)
        rows.append([f"{int(r['rows']):,}", f"{r['scan']:,.0f} s", f"{r['rows'] / r['scan']:,.0f}",
                     f"{r['scan'] / r['floor']:,.0f}x (floor {r['floor']:.2f} s)",
                     f"{r['cpu']:,.0f} s", f"{r['peak']:.1f} GiB"])
    write_section(__file__, "Detection (`distillguard scan`)",
                  "One child process per size times the floor (DuckDB `GROUP BY account_id` over the "
                  "same files, reading no text) and the scan; CPU is user + system time over all "
                  "threads.\n\n" + markdown_table(
                      ["events", "scan (wall)", "events/s", "x floor", "scan CPU", "peak memory"], rows))


if __name__ == "__main__":
    main()
