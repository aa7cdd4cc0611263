"""Gateway throughput and latency, side by side in one run:

  direct       wrk -> mock upstream
  bare         wrk -> a bare aiohttp pass-through proxy (aiohttp server + pooled aiohttp client)
  distillguard wrk -> `distillguard serve` (auth, limits, policy, capture to SQLite, online detection)
  litellm      wrk -> LiteLLM's proxy (from PyPI, in its own venv under /tmp; no database)

Each server is one process/worker pinned to core 0; the mock upstream and wrk share core 1.
Non-streaming and streaming, at 1 and 16 clients. Prints req/s, p50, the server's CPU time per
request (steadier than req/s on a shared machine) and the ratios the issue sets as targets. Usage:

    python benchmarks/bench_gateway.py [--duration 5] [--clients 1 16] [--repeat 3] [--no-litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _docs import markdown_table, write_section

LITELLM_VENV = Path(os.environ.get("DG_LITELLM_VENV", "/tmp/dg-litellm-venv"))

BARE_PROXY = r"""
import sys, aiohttp, uvloop
from aiohttp import web
UP = sys.argv[1]
async def start(app):
    app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
async def stop(app):
    await app["s"].close()
async def proxy(request):
    body = await request.read()
    async with request.app["s"].post(UP + request.path, data=body, headers={"content-type": "application/json"}) as up:
        if up.headers.get("content-type", "").startswith("text/event-stream"):
            resp = web.StreamResponse(status=up.status, headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        return web.Response(body=await up.read(), status=up.status, content_type="application/json")
app = web.Application()
app.on_startup.append(start); app.on_cleanup.append(stop)
app.router.add_post("/v1/chat/completions", proxy)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PIN = True


def pin(core: int) -> list[str]:
    ok = PIN and shutil.which("taskset") and (os.cpu_count() or 1) > 1
    return ["taskset", "-c", str(core)] if ok else []


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def ensure_litellm() -> Path | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing litellm[proxy] into {LITELLM_VENV} (separate venv) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    except subprocess.CalledProcessError as exc:
        print(f"litellm unavailable: {exc}")
        return None
    return exe if exe.exists() else None


LITELLM_KEY = "sk-bench-0123456789abcdef0123456789abcdef"


def wrk_script(tmp: Path, key: str, stream: bool) -> Path:
    body = {"model": "gpt-bench", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
    if stream:
        body["stream"] = True
    p = tmp / f"post-{int(stream)}-{key[-6:]}.lua"
    p.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(body)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    return p


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += [c for c, (pp, _) in stats.items() if pp == p]
    return total


STOP_GRACE_S = 10.0  # a server stopped gets this long to exit before it is killed


def stop_all(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """Ask every process to stop at once, then kill each one still running after `grace_s`."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()


def _ms(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    if not m:
        return float("nan")
    x, unit = float(m.group(1)), m.group(2)
    return x / 1000 if unit == "us" else x * 1000 if unit == "s" else x


def run_wrk(url: str, script: Path, clients: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [*pin(1), "wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": p50, "non2xx": float(bad.group(1)) if bad else 0.0, "socket_errors": 1.0 if errs else 0.0}


async def _pyload(url: str, body: bytes, key: str, clients: int, duration: float) -> dict[str, float]:
    import aiohttp

    lat: list[float] = []
    bad = 0
    stop = time.perf_counter() + duration

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal bad
        while time.perf_counter() < stop:
            t = time.perf_counter()
            async with s.post(url, data=body, headers={"content-type": "application/json", "authorization": f"Bearer {key}"}) as r:
                await r.read()
                bad += r.status >= 300
            lat.append(time.perf_counter() - t)

    async with aiohttp.ClientSession() as s:
        await asyncio.gather(*(worker(s) for _ in range(clients)))
    return {"rps": len(lat) / duration, "p50_ms": statistics.median(lat) * 1000, "non2xx": float(bad), "socket_errors": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds per cell; medians are reported")
    ap.add_argument("--no-detect", action="store_true", help="run distillguard without online detection")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--no-pin", action="store_true", help="let the OS place processes (a busy shared core 0 penalises pinning)")
    args = ap.parse_args()
    global PIN
    PIN = not args.no_pin

    from distillguard.gateway import Store, issue_key

    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    py = sys.executable

    def start(cmd: list[str], core: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(tmp / f"p{len(procs)}.log", "wb") as log:  # the child keeps its own copy
            p = subprocess.Popen([*pin(core), *cmd], stdout=subprocess.DEVNULL, stderr=log, env=env)
        procs.append(p)
        return p

    try:
        up_port, bare_port, dg_port, ll_port = free_port(), free_port(), free_port(), free_port()
        up = f"http://127.0.0.1:{up_port}"
        p = start([py, "-c", f"from distillguard.gateway import run_mock_upstream; run_mock_upstream(port={up_port})"], 1)
        wait_http(up + "/v1/models", p)
        p = start([py, "-c", BARE_PROXY, up, str(bare_port)], 0)
        wait_http(f"http://127.0.0.1:{bare_port}/", p)

        db = f"sqlite:///{tmp / 'bench.db'}"
        key = issue_key(Store(db), "bench").key
        limits = tmp / "limits.json"
        big = {"requests_per_minute": 10**9, "requests_per_day": 10**10, "tokens_per_minute": 10**12, "tokens_per_day": 10**13}
        limits.write_text(json.dumps({"key": big, "account": big}))
        cmd = [py, "-m", "distillguard", "serve", "--upstream", up + "/v1", "--port", str(dg_port), "--db", db,
               "--limits", str(limits), "--log-level", "warning"]
        if args.no_detect:
            cmd.append("--no-detect")
        p = start(cmd, 0, {**os.environ, "DISTILLGUARD_ADMIN_TOKEN": "bench-admin-token-000000"})
        wait_http(f"http://127.0.0.1:{dg_port}/healthz", p)

        pids = {"direct": procs[0].pid, "bare": procs[1].pid, "distillguard": procs[2].pid}
        targets = {
            "direct": up + "/v1/chat/completions",
            "bare": f"http://127.0.0.1:{bare_port}/v1/chat/completions",
            "distillguard": f"http://127.0.0.1:{dg_port}/v1/chat/completions",
        }
        exe = None if args.no_litellm else ensure_litellm()
        if exe is not None:
            cfg = tmp / "litellm.yaml"
            cfg.write_text(
                "model_list:\n  - model_name: gpt-bench\n    litellm_params:\n      model: openai/gpt-bench\n"
                f"      api_base: {up}/v1\n      api_key: sk-bench\n"
            )
            p = start([str(exe), "--config", str(cfg), "--port", str(ll_port), "--num_workers", "1"], 0,
                      {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": LITELLM_KEY})
            wait_http(f"http://127.0.0.1:{ll_port}/health/liveliness", p, timeout=180)
            targets["litellm"] = f"http://127.0.0.1:{ll_port}/v1/chat/completions"
            pids["litellm"] = p.pid

        use_wrk = shutil.which("wrk") is not None
        print(f"load generator: {'wrk' if use_wrk else 'python aiohttp (wrk not found)'}; {args.duration:g} s per cell; "
              f"cpu count {os.cpu_count()}; pinned {PIN}; load average {os.getloadavg()[0]:.1f}")
        results: dict[str, dict[str, dict[str, float]]] = {}
        runs: dict[str, dict[str, list[dict[str, float]]]] = {}
        for stream in (False, True):
            for c in args.clients:
                cell = f"{'stream' if stream else 'json'}@{c}"
                # Rounds interleave the servers, so a burst of load from other jobs on this shared
                # machine lands on all of them; ratios are taken within a round, then the median.
                for rnd in range(args.repeat):
                    for name, url in targets.items():
                        k = LITELLM_KEY if name == "litellm" else key
                        script = wrk_script(tmp, k, stream)
                        body = json.loads(re.search(r"wrk.body = '(.*)'", script.read_text()).group(1))  # type: ignore[union-attr]
                        if use_wrk and rnd == 0:  # warm up connection pools and caches
                            run_wrk(url, script, c, 1)
                        cpu0 = cpu_seconds(pids[name])
                        if use_wrk:
                            r = run_wrk(url, script, c, args.duration)
                        else:
                            r = asyncio.run(_pyload(url, json.dumps(body).encode(), k, c, args.duration))
                        # CPU per request of the server under test: what it would sustain on a core of
                        # its own, a steadier figure than req/s on a shared machine
                        r["cpu_us"] = (cpu_seconds(pids[name]) - cpu0) / max(1.0, r["rps"] * args.duration) * 1e6
                        runs.setdefault(cell, {}).setdefault(name, []).append(r)
                        flag = f"  ({int(r['non2xx'])} non-2xx!)" if r["non2xx"] else ""
                        print(f"{cell:10s} {name:13s} {r['rps']:9.0f} req/s   p50 {r['p50_ms']:8.2f} ms   cpu {r['cpu_us']:7.0f} us/req{flag}", flush=True)
                results[cell] = {name: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for name, rs in runs[cell].items()}

        print(f"\nmedians of {args.repeat} interleaved runs (load average now {os.getloadavg()[0]:.1f})")
        for cell, row in results.items():
            for name, r in row.items():
                print(f"{cell:10s} {name:13s} {r['rps']:9.0f} req/s   p50 {r['p50_ms']:8.2f} ms   cpu {r['cpu_us']:7.0f} us/req")

        def med(cell: str, f: Any) -> float:
            rs = runs[cell]
            return statistics.median(f({n: rs[n][i] for n in rs}) for i in range(args.repeat))

        print("\nratios, median over rounds (targets: added p50 at 1 client <= 1 ms; at 16 clients >= 0.7x bare and >= 10x LiteLLM)")
        for cell, row in results.items():
            parts = [f"{cell:10s} added p50 {med(cell, lambda x: x['distillguard']['p50_ms'] - x['direct']['p50_ms']):+.2f} ms over direct",
                     f"{med(cell, lambda x: x['distillguard']['rps'] / x['bare']['rps']):.2f}x bare req/s "
                     f"({med(cell, lambda x: x['bare']['cpu_us'] / x['distillguard']['cpu_us']):.2f}x by cpu/req)"]
            if "litellm" in row:
                parts.append(f"{med(cell, lambda x: x['distillguard']['rps'] / x['litellm']['rps']):.1f}x litellm req/s "
                             f"({med(cell, lambda x: x['litellm']['cpu_us'] / x['distillguard']['cpu_us']):.1f}x by cpu/req)")
            print(";  ".join(parts))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        rows = [[cell, name, f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f} ms", f"{r['cpu_us']:,.0f} µs"]
                for cell, row in results.items() for name, r in row.items()]
        write_section(__file__, "Gateway",
                      f"wrk, one worker each, mock upstream, medians of {args.repeat} interleaved rounds; "
                      "`cpu/req` is the server's CPU time per request, steadier than req/s on a shared "
                      "machine.\n\n" + markdown_table(["clients", "server", "req/s", "p50", "cpu/req"], rows,
                                                      align="llrrr"))
    finally:
        stop_all(procs, STOP_GRACE_S)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
