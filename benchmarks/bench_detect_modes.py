"""Where online detection runs, and what it costs the request path: `distillguard serve` at 16
clients with detection off (the baseline), in-process, in a child process (the default), in a
child process with the capture spool on, and as a follower replica (`--detector remote`) of a
`distillguard detector` on its database, side by side in interleaved rounds; with `--against
CHECKOUT`, each variant also runs from another checkout's code (`name@other`: before/after in
the same rounds).

    python benchmarks/bench_detect_modes.py [--duration 5] [--clients 16] [--repeat 3] [--pin]
        [--variants no-detect child ...] [--against ../other-checkout [--against-variants ...]]

Each variant is its own `serve` process on SQLite in front of the same mock upstream, with
limits raised out of the way; each round starts with another variant; traffic is wrk (`--latency`)
against each in turn, and the variants not being measured are stopped (SIGSTOP to their process
group: the gateway and its detector), so that their detectors' work does not land on the one
measured. Every variant's traffic still feeds its detector (the mock's answers are captured and
detected). Prints req/s, p50, p99 and max per variant (medians of the rounds), the CPU time
per request of the gateway process and of its detector (the child, or the remote detector;
steadier than req/s on a shared machine; a detector's share lags its window by up to one
step), and the ratios to `--no-detect` within each round (`name@other` to `no-detect@other`; the issue's targets: p99 <= 10 ms
at 16 clients, throughput within 10 % of `--no-detect`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_gateway  # noqa: E402
from _docs import markdown_table, write_section  # noqa: E402
from bench_gateway import _ms, free_port, pin, stop_all, wait_http, wrk_script  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "no-detect": ["--no-detect"],
    "inprocess": ["--detector", "inprocess"],
    "child": ["--detector", "child"],
    "child+spool": ["--detector", "child", "--spool", "{tmp}/spool"],
    "child+spool-always": ["--detector", "child", "--spool", "{tmp}/spool", "--spool-sync", "always"],
    "remote": ["--detector", "remote"],  # with a `distillguard detector` on its database
    # the start-up heap left in the garbage collector's full collections (gateway and child)
    "child-unfrozen": ["--detector", "child", "--no-freeze-heap"],
}
#: the variant every ratio is taken against
BASELINE = "no-detect"
STOP_GRACE_S = 15.0  # a gateway stopped gets this long to exit (its detector may save state)


def wrk(url: str, script: Path, clients: int, duration: float) -> dict[str, float]:
    out = subprocess.run([*pin(1), "wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    pct = {p: _ms(re.search(rf"^\s+{p}%\s+(\S+)", out, re.M).group(1)) for p in ("50", "99")}  # type: ignore[union-attr]
    mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": pct["50"], "p99_ms": pct["99"], "max_ms": _ms(mx.group(1)) if mx else float("nan"),
            "non2xx": float(bad.group(1)) if bad else 0.0}


def descendants(pid: int) -> list[int]:
    """A process's children, theirs, and so on (from /proc)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def own_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of one process, without its children."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(gateway, detector) CPU seconds of a variant's processes: the gateway itself, and its
    descendants (a child detector) plus the other processes and theirs (a remote detector)."""
    gw, *others = pids
    return own_cpu_seconds(gw), sum(own_cpu_seconds(p) for p in [*descendants(gw), *others, *(d for o in others for d in descendants(o))])


def signal_groups(pids: list[int], sig: int) -> None:
    """`sig` to each process group of `pids`, and of their descendants (a gateway's detector
    child runs in a session of its own)."""
    for pid in pids:
        for p in (pid, *descendants(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(p), sig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds every variant runs idle before the rounds")
    ap.add_argument("--pin", action="store_true", help="pin servers to core 0, wrk and the upstream to core 1")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help=f"the variants to run ({BASELINE} always runs: the ratios' baseline)")
    ap.add_argument("--against", type=Path, help="another checkout: each variant also runs its code (name@other)")
    ap.add_argument("--against-variants", nargs="+", choices=list(VARIANTS),
                    help="with --against: the variants to run on its code too (default: all those run; "
                         "leave out those whose options it lacks)")
    args = ap.parse_args()
    selected = [BASELINE, *(v for v in args.variants if v != BASELINE)]
    # name -> (serve's extra arguments, PYTHONPATH of its code)
    variants: dict[str, tuple[list[str], str]] = {n: (VARIANTS[n], str(Path(__file__).parents[1] / "src")) for n in selected}
    if args.against is not None:
        other = str(args.against.resolve() / "src")
        again = [BASELINE, *(v for v in args.against_variants or selected if v != BASELINE)]
        variants |= {f"{n}@other": (VARIANTS[n], other) for n in again}
    bench_gateway.PIN = args.pin
    from distillguard.gateway import Store, issue_key

    tmp = Path(tempfile.mkdtemp(prefix="dg-modes-"))
    procs: list[subprocess.Popen[bytes]] = []
    groups: dict[str, list[int]] = {}  # variant -> its process groups (the gateway and its child; a detector)
    try:
        up_port = free_port()
        up = f"http://127.0.0.1:{up_port}"
        procs.append(subprocess.Popen([*pin(1), sys.executable, "-c",
                                       f"from distillguard.gateway import run_mock_upstream; run_mock_upstream(port={up_port})"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(up + "/v1/models", procs[-1])
        big = {"requests_per_minute": 10**9, "requests_per_day": 10**10, "tokens_per_minute": 10**12, "tokens_per_day": 10**13}
        limits = tmp / "limits.json"
        limits.write_text(json.dumps({"key": big, "account": big}))
        urls, keys = {}, {}
        for name, (extra, code) in variants.items():
            env = {**os.environ, "PYTHONPATH": code, "DISTILLGUARD_ADMIN_TOKEN": "bench-admin-token-000000"}
            db = f"sqlite:///{tmp / (name + '.db')}"
            keys[name] = issue_key(Store(db), "bench").key
            port = free_port()
            cmd = [sys.executable, "-m", "distillguard", "serve", "--upstream", up + "/v1", "--port", str(port), "--db", db,
                   "--limits", str(limits), "--log-level", "warning", "--detect-interval", "2",
                   *[a.replace("{tmp}", str(tmp / name)) for a in extra]]
            procs.append(subprocess.Popen([*pin(0), *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          env=env, start_new_session=True))
            groups[name] = [procs[-1].pid]
            urls[name] = f"http://127.0.0.1:{port}"
            wait_http(urls[name] + "/healthz", procs[-1])
            if extra == VARIANTS["remote"]:
                procs.append(subprocess.Popen([*pin(0), sys.executable, "-m", "distillguard", "detector", "--db", db,
                                               "--interval", "2", "--nice", "10", "--log-level", "warning"],  # as a child runs
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                              start_new_session=True))
                groups[name].append(procs[-1].pid)
        # detectors warm up (imports, the content model: seconds) before any is stopped
        time.sleep(args.settle)
        for pids in groups.values():
            signal_groups(pids, signal.SIGSTOP)
        load0 = os.getloadavg()[0]
        print(f"{args.clients} clients, {args.duration:g} s per cell, {args.repeat} rounds; cpu count {os.cpu_count()}; "
              f"pinned {args.pin}; load average {load0:.1f}")
        runs: dict[str, list[dict[str, float]]] = {n: [] for n in variants}
        names = list(variants)
        for rnd in range(args.repeat):
            # each round starts with another variant: none always runs first (or last)
            for name in names[rnd % len(names):] + names[: rnd % len(names)]:
                script = wrk_script(tmp, keys[name], False)
                signal_groups(groups[name], signal.SIGCONT)
                try:
                    if rnd == 0:
                        wrk(urls[name] + "/v1/chat/completions", script, args.clients, 1)
                    cpu0 = cpu_split(groups[name])
                    r = wrk(urls[name] + "/v1/chat/completions", script, args.clients, args.duration)
                    cpu1 = cpu_split(groups[name])
                finally:
                    signal_groups(groups[name], signal.SIGSTOP)
                served = max(1.0, r["rps"] * args.duration)
                r["gw_us"], r["det_us"] = ((b - a) / served * 1e6 for a, b in zip(cpu0, cpu1, strict=True))
                runs[name].append(r)
                print(f"round {rnd}  {name:12s} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                      f"max {r['max_ms']:7.2f} ms  cpu/req gateway {r['gw_us']:4.0f} us detector {r['det_us']:3.0f} us"
                      + (f"  ({int(r['non2xx'])} non-2xx!)" if r["non2xx"] else ""), flush=True)
        load = (load0, os.getloadavg()[0])
        print(f"\nmedians (load average now {load[1]:.1f}); ratios to no-detect within each round, median")
        rows = []
        for name, rs in runs.items():
            m = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            base = runs[BASELINE + name[len(name.split("@")[0]):]]  # the same checkout's no-detect
            ratio = statistics.median(r["rps"] / b["rps"] for r, b in zip(rs, base, strict=True))
            p99 = statistics.median(r["p99_ms"] / b["p99_ms"] for r, b in zip(rs, base, strict=True))
            cpu = statistics.median((r["gw_us"] + r["det_us"]) / (b["gw_us"] + b["det_us"]) for r, b in zip(rs, base, strict=True))
            print(f"{name:12s} {m['rps']:8.0f} req/s ({ratio:.2f}x no-detect)  p50 {m['p50_ms']:6.2f} ms  "
                  f"p99 {m['p99_ms']:7.2f} ms ({p99:.2f}x)  max {m['max_ms']:7.2f} ms  "
                  f"cpu/req gateway {m['gw_us']:.0f} us, detector {m['det_us']:.0f} us ({cpu:.2f}x)")
            rows.append([name, f"{m['rps']:,.0f}", f"{ratio:.2f}x", f"{m['p50_ms']:.2f} ms", f"{m['p99_ms']:.2f} ms",
                         f"{p99:.2f}x", f"{m['max_ms']:.1f} ms", f"{m['gw_us']:.0f} µs", f"{m['det_us']:.0f} µs", f"{cpu:.2f}x"])
        write_section(__file__, "Where detection runs: the request path's cost"
                      + (", against another checkout" if args.against else ""),
                      f"wrk at {args.clients} clients against one `serve` per variant (SQLite, mock upstream, limits "
                      f"raised), {args.repeat} interleaved rounds of {args.duration:g} s, medians (load average "
                      f"{load[0]:.1f} at the start, {load[1]:.1f} at the end: other work on the machine inflates the "
                      "tails); the variants not "
                      "measured are stopped meanwhile; ratios to `--no-detect` are taken within each round; "
                      "CPU per request of the gateway process and of its detector (child or remote), and their "
                      "sum's ratio to `--no-detect`'s (steadier than req/s on a shared machine)"
                      + (f"; `@other`: the same variant on {args.against}'s code, its ratios to its own "
                         "`no-detect@other`" if args.against else "")
                      + ". The issue's targets: p99 <= 10 ms, throughput within 10 % of `--no-detect`.\n\n"
                      + markdown_table(["variant", "req/s", "vs no-detect", "p50", "p99", "p99 vs no-detect", "max",
                                        "gateway cpu/req", "detector cpu/req", "cpu/req vs no-detect"], rows),
                      part="against" if args.against else "")
    finally:
        for pids in groups.values():
            signal_groups(pids, signal.SIGCONT)
        stop_all(procs, STOP_GRACE_S)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
