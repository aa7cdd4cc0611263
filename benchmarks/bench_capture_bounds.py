"""What bounding captured rows costs the capture thread: `bound_event` on N typical rows against
the SQLite batch insert of the same rows, timed in the same run.

    python benchmarks/bench_capture_bounds.py [N]

Prints µs per row for each and the ratio (bounding / insert).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from distillguard.gateway import Store
from distillguard.gateway._store import bound_event


def rows(n: int) -> list[tuple[object, ...]]:
    prompt = "please explain how the old house was built and why people liked it " * 6
    answer = "The house was built of stone over many years, and people liked its quiet rooms. " * 8
    return [(f"ev{i:012d}", 1_700_000_000_000_000 + i, f"acct-{i % 5000}", f"k{i % 9000:012x}", "10.0.0.1",
             "python-httpx/0.28", "chat.completions", "gpt-test", None, prompt, 1, 0, answer, 90, 120, 256, 0.7, 200, 12.5)
            for i in range(n)]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    data = rows(n)
    t = time.perf_counter()
    bounded = [bound_event(r) for r in data]
    bound_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'b.db'}")
        t = time.perf_counter()
        for i in range(0, n, 2000):
            store.insert_events(bounded[i:i + 2000], bounded=True)
        insert_s = time.perf_counter() - t
        store.close()
    print(f"{n:,} rows: bound_event {bound_s / n * 1e6:.2f} µs/row, SQLite insert {insert_s / n * 1e6:.2f} µs/row, "
          f"ratio {bound_s / insert_s:.3f}")


if __name__ == "__main__":
    main()
