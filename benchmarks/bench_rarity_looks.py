"""The looks the replay keeps between decisions against the passes over every shared pair.

    python benchmarks/bench_rarity_looks.py --log /work/dg-bench/log-1000000

Replays the log once. At each look of the rarity evidence it computes the key sizes both ways
in this process, kept between looks (`KeySizes.update`) and from every shared pair
(`key_sizes`); at each look for the first request's campaign keys likewise
(`FirstRequestFlags.look` against `campaign_key_codes`). It checks that both give the same
answer at every look, and prints the CPU seconds of each (this thread's: numpy runs in it)
and their ratio.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _docs import markdown_table, write_section

from distillguard.detect import _firstrequest, _rarity
from distillguard.detect._config import load_config
from distillguard.detect._firstrequest import FirstRequestFlags, campaign_key_codes
from distillguard.detect._rarity import KeySizes, key_sizes
from distillguard.detect._replay import replay


class Timings:
    """CPU seconds of the kept look and of the full pass, and how many looks agreed."""

    def __init__(self) -> None:
        self.kept = 0.0
        self.full = 0.0
        self.looks = 0

    def both(self, kept: Callable[[], np.ndarray], full: Callable[[], np.ndarray]) -> np.ndarray:
        t0 = time.thread_time()
        got = kept().copy()
        t1 = time.thread_time()
        want = full()
        t2 = time.thread_time()
        if not np.array_equal(got, want):
            raise AssertionError(f"look {self.looks}: the kept answer differs from the full pass")
        self.kept += t1 - t0
        self.full += t2 - t1
        self.looks += 1
        return got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log", type=Path, required=True, help="a traffic log directory")
    args = p.parse_args()
    sizes, keys = Timings(), Timings()
    kept_sizes = KeySizes.update
    kept_keys = FirstRequestFlags.look

    def sizes_both(self: KeySizes, state: Any, suspicious: Any, by_key: Any) -> np.ndarray:
        return sizes.both(lambda: kept_sizes(self, state, suspicious, by_key),
                          lambda: key_sizes(state, suspicious, by_key))

    def keys_both(self: FirstRequestFlags, state: Any, action: Any, harvest: Any,
                  index: Any) -> np.ndarray:
        return keys.both(lambda: kept_keys(self, state, action, harvest, index),
                         lambda: campaign_key_codes(state, action, harvest, self.cfg))

    _rarity.KeySizes.update = sizes_both  # type: ignore[method-assign]
    _firstrequest.FirstRequestFlags.look = keys_both  # type: ignore[method-assign]
    cfg = load_config()
    start = time.perf_counter()
    det, _ = replay(args.log, cfg, None, first_request=FirstRequestFlags(cfg.first_request))
    wall = time.perf_counter() - start
    rows = [
        [name, t.looks, f"{t.full:.1f}", f"{t.kept:.2f}", f"{t.full / max(t.kept, 1e-9):.1f}x"]
        for name, t in (("rarity key sizes", sizes), ("first-request campaign keys", keys))
    ]
    table = markdown_table(["look", "looks", "every pair (CPU s)", "kept (CPU s)", "ratio"], rows)
    body = (f"{det.state.events_seen:,} events ({args.log.name}), "
            f"{len(det.state.shared_pairs()):,} shared pairs at the end. Every look gave the "
            f"same answer both ways.\n\n{table}\n")
    print(body)
    print(f"replay {wall:.0f} s wall, load average {os.getloadavg()[0]:.1f} (shared machine)")
    write_section(__file__, "Rarity and first-request looks kept between decisions", body)


if __name__ == "__main__":
    main()
