"""The garbage collector's pauses in `distillguard serve` under load, its start-up heap frozen
(the default) against left in the collector's generations (`--no-freeze-heap`).

    python benchmarks/bench_gc_pauses.py [--duration 30] [--clients 16] [--rounds 2] [--detect]

Each round starts a fresh `serve` per variant (SQLite, mock upstream, limits raised,
`--no-detect` unless `--detect`), the order alternating from round to round, and sends it wrk
traffic for `--duration` seconds. The server runs under `gc.callbacks` that time every
collection (reset when the traffic starts, read when it ends): printed per variant are the
collections of each generation, their summed and longest pause, and wrk's p99 and max.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _against import in_turn  # noqa: E402
from _docs import markdown_table, write_section  # noqa: E402
from bench_gateway import _ms, free_port, stop_all, wait_http, wrk_script  # noqa: E402

VARIANTS = {"frozen": [], "unfrozen": ["--no-freeze-heap"]}

#: runs `distillguard` with every collection timed; SIGUSR1 resets, SIGUSR2 writes GC_OUT
TIMED_CLI = r"""
import gc, json, os, signal, sys, time
stats, began = {}, [0.0]
def timed(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
        return
    took, s = time.perf_counter() - began[0], stats.setdefault(info["generation"], [0, 0.0, 0.0])
    s[0] += 1; s[1] += took; s[2] = max(s[2], took)
gc.callbacks.append(timed)
signal.signal(signal.SIGUSR1, lambda *_: stats.clear())
signal.signal(signal.SIGUSR2, lambda *_: open(os.environ["GC_OUT"], "w").write(json.dumps(stats)))
sys.argv = ["distillguard", *sys.argv[1:]]
from distillguard.cli import main
main()
"""


def wrk(url: str, script: Path, clients: int, duration: float) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
            "max_ms": _ms(mx.group(1)) if mx else float("nan")}


def one_run(args: argparse.Namespace, tmp: Path, upstream: str, limits: Path, variant: str, rnd: int) -> dict[str, Any]:
    """A fresh `serve` of `variant` under wrk: its collections and wrk's figures."""
    from distillguard.gateway import Store, issue_key

    db = f"sqlite:///{tmp / f'{variant}-{rnd}.db'}"
    key = issue_key(Store(db), "bench").key
    port, out = free_port(), tmp / f"gc-{variant}-{rnd}.json"
    cmd = [sys.executable, "-c", TIMED_CLI, "serve", "--upstream", upstream + "/v1", "--port", str(port), "--db", db,
           "--limits", str(limits), "--log-level", "warning", *([] if args.detect else ["--no-detect"]), *VARIANTS[variant]]
    env = {**os.environ, "GC_OUT": str(out), "DISTILLGUARD_ADMIN_TOKEN": "bench-admin-token-000000"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", proc)
        time.sleep(args.settle)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        r: dict[str, Any] = wrk(url + "/v1/chat/completions", wrk_script(tmp, key, False), args.clients, args.duration)
        proc.send_signal(signal.SIGUSR2)
        for _ in range(50):
            if out.exists():
                break
            time.sleep(0.1)
        r["gc"] = {int(g): v for g, v in json.loads(out.read_text()).items()}
    finally:
        stop_all([proc], 15.0)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds a server runs idle before its traffic")
    ap.add_argument("--detect", action="store_true", help="with a child detector (the default `serve`)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dg-gc-"))
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    mock = subprocess.Popen([sys.executable, "-c", f"from distillguard.gateway import run_mock_upstream; run_mock_upstream(port={up_port})"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    try:
        wait_http(upstream + "/v1/models", mock)
        big = {"requests_per_minute": 10**9, "requests_per_day": 10**10, "tokens_per_minute": 10**12, "tokens_per_day": 10**13}
        limits = tmp / "limits.json"
        limits.write_text(json.dumps({"key": big, "account": big}))
        load0 = os.getloadavg()[0]
        for rnd in range(args.rounds):
            for variant in in_turn(list(VARIANTS), rnd):
                r = one_run(args, tmp, upstream, limits, variant, rnd)
                runs[variant].append(r)
                gens = ", ".join(f"gen{g} {n} ({t * 1e3:.0f} ms, longest {m * 1e3:.1f} ms)" for g, (n, t, m) in sorted(r["gc"].items()))
                print(f"round {rnd}  {variant:9s} {r['rps']:6.0f} req/s  p99 {r['p99_ms']:6.1f} ms  max {r['max_ms']:6.1f} ms  "
                      f"collections: {gens}", flush=True)
    finally:
        stop_all([mock], 10.0)
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for variant, rs in runs.items():
        n = sum(r["rps"] * args.duration for r in rs)
        full = sum(r["gc"].get(2, [0, 0.0, 0.0])[0] for r in rs)
        longest = max((v[2] for r in rs for v in r["gc"].values()), default=0.0)
        gc_ms = sum(v[1] for r in rs for v in r["gc"].values()) * 1e3
        rows.append([variant, f"{n:,.0f}", str(full), f"{longest * 1e3:.1f} ms", f"{gc_ms / n * 1e3:.2f} µs",
                     f"{max(r['p99_ms'] for r in rs):.1f} ms", f"{max(r['max_ms'] for r in rs):.1f} ms"])
        print(f"{variant:9s} {n:9,.0f} requests  full collections {full}  longest pause {longest * 1e3:.1f} ms  "
              f"collector {gc_ms / n * 1e3:.2f} us/request")
    write_section(__file__, "Garbage-collector pauses in `serve`: start-up heap frozen or not",
                  f"{args.rounds} rounds of {args.duration:g} s at {args.clients} clients per variant, a fresh `serve` "
                  f"each ({'child detector' if args.detect else '`--no-detect`'}, SQLite, mock upstream), the order "
                  f"alternating; load average {load0:.1f} at the start. Collections timed inside the server "
                  "(`gc.callbacks`) while wrk ran; p99 and max are the worst round's.\n\n"
                  + markdown_table(["heap", "requests", "full collections", "longest pause", "collector time/request",
                                    "p99", "max"], rows))


if __name__ == "__main__":
    main()
