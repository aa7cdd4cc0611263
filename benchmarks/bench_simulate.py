"""Simulator throughput: events/s of `distillguard simulate` against a floor measured in the same run.

The floor writes the same number of rows of pre-generated random data (same schema, strings
of similar length, generated before the clock starts) to Parquet with the same codec. The
ratio says how much slower simulating is than merely writing that much data.

    python benchmarks/bench_simulate.py                   # 1M events
    python benchmarks/bench_simulate.py --events 100000,1000000,10000000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _docs import markdown_table, write_section

from distillguard.simulate import load_corpora, simulate
from distillguard.traffic import EVENTS


def _random_table(n: int, rng: np.random.Generator) -> pa.Table:
    def strings(count: int, mean_log_len: float) -> pa.Array:
        lens = rng.lognormal(mean_log_len, 0.9, count).astype(int) + 1
        return pa.array(["".join(chr(c) for c in rng.integers(32, 127, size=int(k))) for k in lens])

    long_pool, short_pool = strings(20_000, 6.2), strings(5_000, 2.8)  # ~700 and ~24 characters
    cols = {}
    for f in EVENTS.schema:
        if pa.types.is_string(f.type):
            pool = long_pool if f.name == "prompt" else short_pool
            cols[f.name] = pool.take(pa.array(rng.integers(len(pool), size=n)))
        elif pa.types.is_timestamp(f.type):
            cols[f.name] = pa.array(np.sort(rng.integers(0, 7 * 86_400_000_000, size=n)), f.type)
        elif pa.types.is_floating(f.type):
            cols[f.name] = pa.array(rng.random(n).astype(np.float32), f.type)
        else:
            cols[f.name] = pa.array(rng.integers(0, 1000, size=n)).cast(f.type)
    return pa.table(cols, schema=EVENTS.schema)


def _floor(n: int, out: Path) -> float:
    rng = np.random.default_rng(0)
    table = _random_table(min(n, 1_000_000), rng)  # written repeatedly to reach n rows
    t = time.perf_counter()
    with pq.ParquetWriter(out / "floor.parquet", EVENTS.schema, compression="zstd") as w:
        left = n
        while left > 0:
            k = min(left, table.num_rows)
            w.write_table(table.slice(0, k), row_group_size=200_000)
            left -= k
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", default="1000000", help="comma-separated sizes")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    corp = load_corpora()
    rows = []
    print(f"{'events':>12} {'simulate s':>11} {'events/s':>10} {'floor s':>9} {'floor ev/s':>11} {'ratio':>6} {'MB':>7}")
    for n in (int(x) for x in args.events.split(",")):
        tmp = Path(tempfile.mkdtemp(prefix="bench_sim_"))
        try:
            r = simulate(tmp / "log", seed=args.seed, events=n, corpora=corp)
            mb = sum(f.stat().st_size for f in (tmp / "log").rglob("*.parquet")) / 1e6
            fl = _floor(r.events, tmp)
            print(f"{r.events:>12,} {r.seconds:>11.1f} {r.events / r.seconds:>10,.0f} {fl:>9.1f} "
                  f"{r.events / fl:>11,.0f} {r.seconds / fl:>6.1f} {mb:>7.0f}")
            rows.append([f"{r.events:,}", f"{r.seconds:.1f} s", f"{r.events / r.seconds:,.0f}",
                         f"{fl:.1f} s", f"{r.seconds / fl:.1f}", f"{mb:,.0f} MB"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    write_section(__file__, "Simulator", "`distillguard simulate` against the floor: the same rows of "
                  "pre-generated random data written to Parquet in the same run.\n\n" + markdown_table(
                      ["events", "simulate", "events/s", "floor", "x floor", "disk"], rows))


if __name__ == "__main__":
    main()
