"""What the cross-batch prompt cache saves: the text signals of a log with and without it.

    python benchmarks/bench_text_cache.py --log /work/dg-bench/log-1000000
    python benchmarks/bench_text_cache.py --events 300000 --workdir /tmp/dg-bench

Reads the log's events in the replay's batches (`SIGNAL_BATCH`), trains the content model
(once per process, not timed), then computes `event_signals` over all the batches without a
cache and with a fresh `TextCache` (as a scan does), --repeat rounds in this process, which
first alternating per round, the median of each; both outputs must be equal. Prints the prompts read per batch against the distinct
ones overall, the cache's hits, CPU seconds (this process; polars may use several threads),
the ratio and the load average (the machine is shared), and writes the table to
docs/benchmarks.md.
"""

from __future__ import annotations

import os

import polars as pl
from _against import median_cpu
from _docs import markdown_table, write_section
from bench_content import _batches, log_arguments, log_of

from distillguard.detect._content import content_model
from distillguard.detect._signatures import event_signals
from distillguard.detect._stream import SIGNAL_BATCH
from distillguard.detect._text_cache import TEXT_CACHE_BYTES, TextCache


def main() -> None:
    args = log_arguments(__doc__.splitlines()[0]).parse_args()
    log = log_of(args)
    batches = _batches(log, SIGNAL_BATCH)
    events = sum(b.height for b in batches)
    per_batch = sum(b["prompt"].n_unique() for b in batches)
    overall = pl.concat([b.select("prompt") for b in batches])["prompt"].n_unique()
    content_model()
    caches: list[TextCache] = []

    def cached() -> list[pl.DataFrame]:
        caches.append(TextCache())  # fresh every round, as a scan starts
        return [event_signals(b, caches[-1]) for b in batches]

    seconds, out = median_cpu({"plain": lambda: [event_signals(b, None) for b in batches],
                               "cached": cached}, args.repeat)
    for x, y in zip(out["plain"], out["cached"], strict=True):
        if not x.equals(y):
            raise SystemExit("the signals with and without the prompt cache differ")
    cache = caches[-1]
    a, b = seconds["plain"], seconds["cached"]
    per_m = 1e6 / max(events, 1)
    rows = [["signals, once per distinct prompt in a batch", f"{a:.1f}", f"{a * per_m:.1f}", ""],
            ["signals with the prompt cache, equal output", f"{b:.1f}", f"{b * per_m:.1f}",
             f"{b / a:.2f}"]]
    load = os.getloadavg()[0]
    table = markdown_table(["run", "CPU s", "CPU s per 1M events", "ratio to the row above"],
                           rows)
    head = (f"{events:,} events ({log.name}) in batches of {SIGNAL_BATCH:,}: {per_batch:,} "
            f"distinct prompts per batch, summed, {overall:,} distinct overall; the cache "
            f"({TEXT_CACHE_BYTES // 2**20} MiB of text a generation) found {cache.hits:,} of "
            f"{cache.hits + cache.misses:,}. Median of {args.repeat} runs in one process, which "
            "first alternating per run")
    print(f"{head}; load average {load:.1f}")
    print(table)
    write_section(__file__, "Text signals: the prompt cache across batches",
                  f"{head}.\n\n{table}")


if __name__ == "__main__":
    main()
