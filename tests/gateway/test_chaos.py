"""The chaos test: a fleet under failures keeps its guarantees.

Three `serve --detector remote` replicas (each with its spool), one `distillguard detector`,
PostgreSQL and Redis behind TCP proxies the test cuts, and a client sending a hydra plus benign
users through the replicas in turn (skipping a dead one, as a balancer would). While it runs:
one replica is killed with SIGKILL and restarted, an account with a token budget sends a
concurrent burst over the replicas (overshoot: at most one reservation), PostgreSQL is cut for `PG_CUT_S` seconds
(shortened from the issue's 30 s to keep CI under 3 minutes: what a cut exercises, the spool
holding everything answered, does not change with its length), Redis is cut for `REDIS_CUT_S`
seconds (limits fail open: served, never 5xx), and the detector is killed and restarted (it
resumes from its checkpoint). Afterwards: every answered exchange is in the capture exactly
once, every hydra account is blocked on every replica, benign users never got anything but
200, no answer was 5xx, the replicas' and the detector's /metrics agree, and each hydra account
was first throttled by the fleet in the replay window in which a single-process scan of the
captured events first throttles it, give or take one window (`WINDOW_S`): the fleet decides
between window ends and sees events a capture batch, a spool drain and a step later.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from distillguard.detect import scan
from distillguard.gateway import Store, VerdictTables, export_log, issue_key

from .proxy import TcpProxy
from .support import (
    BURST_OPTIONS,
    detect_config_file,
    free_port,
    metric_samples,
    wait_until_healthy,
)
from .test_online import BROWSER, HUMAN, HYDRA_SYSTEM, TEMPLATES, signed_up

SEED = 3
REPLICAS = 3
PG_CUT_S = 8.0
REDIS_CUT_S = 5.0
PHASE_S = 3.0  # traffic between two failures
WINDOW_S = 10.0  # the replay's cadence window here (15 minutes shipped)
DEADLINE_S = 150.0  # the whole scenario, start-up included
BUDGET = 300  # tokens a day for the `budget` account (a day: no window ends mid-burst)
BURST = 60  # concurrent requests of that account, spread over the replicas
HYDRA = [f"h{i}" for i in range(8)]
BENIGN = [f"b{i}" for i in range(4)]
ADMIN_TOKEN = "chaos-admin-token-0123456"


class Fleet:
    """The processes of the fleet, started and restarted by the test."""

    def __init__(self, tmp: Path, db: str, redis: str, prefix: str, redis_prefix: str, detect_config: Path, limits: Path) -> None:
        self.tmp, self.db, self.redis = tmp, db, redis
        self.prefix, self.redis_prefix = prefix, redis_prefix
        self.detect_config, self.limits = detect_config, limits
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.metrics_port = free_port()
        self.replicas: list[subprocess.Popen[bytes] | None] = [None] * REPLICAS
        self.detector: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "DISTILLGUARD_ADMIN_TOKEN": ADMIN_TOKEN}

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def start_replica(self, i: int) -> None:
        self.replicas[i] = subprocess.Popen(
            [sys.executable, "-m", "distillguard", "serve", "--upstream", "fake", "--port", str(self.ports[i]),
             "--db", self.db, "--table-prefix", self.prefix, "--redis", self.redis, "--redis-prefix", self.redis_prefix,
             "--limits", str(self.limits), "--limits-deadline", str(BURST_OPTIONS.limits_deadline), "--detector", "remote", "--capture-interval", "0.05",
             "--spool", str(self.tmp / f"spool-{i}"), "--log-level", "error"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_detector(self) -> None:
        self.detector = subprocess.Popen(
            [sys.executable, "-m", "distillguard", "detector", "--db", self.db, "--table-prefix", self.prefix,
             "--redis", self.redis, "--redis-prefix", self.redis_prefix, "--config", str(self.detect_config),
             "--interval", "0.3", "--checkpoint-interval", "2", "--metrics-port", str(self.metrics_port),
             "--log-level", "error"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_up(self, i: int, deadline: float) -> None:
        proc = self.replicas[i]
        assert proc is not None, f"replica {i} is not running"
        wait_until_healthy(proc, self.url(i), deadline, lambda: f"replica {i} did not start")

    def wait_leading(self, deadline: float) -> None:
        """Until the detector leads (its /metrics say so), as a fleet in service would."""
        while True:
            try:
                m = metric_samples(httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).text)
                if m.get(("distillguard_detector_leading", ())) == 1:
                    return
            except httpx.TransportError:
                pass
            assert self.detector is not None and self.detector.poll() is None and time.monotonic() < deadline, "the detector did not lead"
            time.sleep(0.1)

    def alive(self, i: int) -> bool:
        proc = self.replicas[i]
        return proc is not None and proc.poll() is None

    def stop(self) -> None:
        procs = [p for p in (*self.replicas, self.detector) if p is not None]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def chaos(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[tuple[Fleet, TcpProxy, TcpProxy, Store]]:
    pg_parts, redis_parts = urlsplit(postgres_url), urlsplit(redis_url)
    pg_proxy = TcpProxy(pg_parts.hostname or "127.0.0.1", pg_parts.port or 5432)
    redis_proxy = TcpProxy(redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379)
    prefix, redis_prefix = f"t{uuid.uuid4().hex[:10]}_", f"dgtest-chaos-{uuid.uuid4().hex[:8]}"
    store = Store(postgres_url, prefix)
    detect_config = detect_config_file(tmp_path, cadence_minutes=WINDOW_S / 60)
    limits = tmp_path / "limits.json"  # throttled accounts get one request a minute
    limits.write_text(json.dumps({"account": {"requests_per_minute": 300}, "throttle_factor": 1 / 300}))
    fleet = Fleet(tmp_path, pg_parts._replace(netloc=f"{pg_parts.username or 'postgres'}@127.0.0.1:{pg_proxy.port}").geturl(),
                  f"redis://127.0.0.1:{redis_proxy.port}{redis_parts.path or '/0'}", prefix, redis_prefix, detect_config, limits)
    try:
        yield fleet, pg_proxy, redis_proxy, store
    finally:
        fleet.stop()
        pg_proxy.close()
        redis_proxy.close()
        VerdictTables(store).drop_all()
        store.drop_all()
        import redis

        r = redis.Redis.from_url(redis_url)
        for key in r.scan_iter(f"{redis_prefix}*"):
            r.delete(key)


BURST_MAX_TOKENS = 20


def budget_burst(fleet: Fleet, key: str) -> list[dict[str, int] | None]:
    """Give the `budget` account its token budget (admin API, read by every replica within
    its refresh), then send `BURST` requests at once over the replicas; each answer's usage,
    or None when refused with 429."""
    import asyncio

    r = httpx.put(fleet.url(0) + "/admin/limits/budget", json={"tokens_per_day": BUDGET},
                  headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    time.sleep(3)  # every replica refreshes its limits (every 2 s)

    async def burst() -> list[dict[str, int] | None]:
        async with httpx.AsyncClient(timeout=15, headers={"authorization": f"Bearer {key}"}) as c:
            answers = await asyncio.gather(*(
                c.post(fleet.url(i % REPLICAS) + "/v1/chat/completions", json={
                    "model": "m", "max_tokens": BURST_MAX_TOKENS,
                    "messages": [{"role": "user", "content": f"budget question {i} please answer"}]})
                for i in range(BURST)))
        assert {a.status_code for a in answers} <= {200, 429}
        return [a.json()["usage"] if a.status_code == 200 else None for a in answers]

    return asyncio.run(burst())


def test_the_fleet_keeps_its_guarantees_under_chaos(chaos: tuple[Fleet, TcpProxy, TcpProxy, Store]) -> None:
    fleet, pg, redis_proxy, store = chaos
    start = time.monotonic()
    rng = random.Random(SEED)
    keys = signed_up(store, HYDRA, BENIGN)
    store.upsert_account("budget", signup_channel="self_serve", verified=True, country="US")
    keys["budget"] = issue_key(store, "budget").key
    fleet.start_detector()
    for i in range(REPLICAS):
        fleet.start_replica(i)
    for i in range(REPLICAS):
        fleet.wait_up(i, start + 60)
    fleet.wait_leading(start + 60)  # the replay windows are compared from the first request on

    first_throttled: dict[str, int] = {}  # hydra account -> when the fleet first published a throttle (us)
    watching = threading.Event()

    def watch() -> None:
        tables = VerdictTables(store)  # straight to PostgreSQL, not through the proxy the test cuts
        while not watching.wait(0.2):
            for r in tables.since(0):
                if r["account_id"] in HYDRA and r["action"] in ("throttle", "block"):
                    first_throttled.setdefault(r["account_id"], int(r["updated_us"]))

    watcher = threading.Thread(target=watch, name="chaos-verdict-watch", daemon=True)
    watcher.start()
    sent: list[tuple[str, str, int]] = []  # (account, prompt, status)
    during: dict[str, list[int]] = {"pg": [], "redis": []}  # statuses answered during each cut
    phase = ""
    n = 0

    def traffic(seconds: float, c: httpx.Client) -> None:
        nonlocal n
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for acc in [*HYDRA, *BENIGN[: 1 + n % len(BENIGN)]]:
                live = [i for i in range(REPLICAS) if fleet.alive(i)]
                i = live[n % len(live)]
                n += 1
                if acc in HYDRA:
                    prompt = rng.choice(TEMPLATES).format(i=rng.randint(1, 99), j=rng.randint(1, 99)) + f" (#{n})"
                    msgs, headers = [{"role": "system", "content": HYDRA_SYSTEM}, {"role": "user", "content": prompt}], {}
                else:
                    prompt = rng.choice(HUMAN) + f" (#{n})"
                    msgs, headers = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure."},
                                     {"role": "user", "content": prompt}], {"user-agent": BROWSER}
                try:
                    r = c.post(fleet.url(i) + "/v1/chat/completions", json={"model": "m", "max_tokens": 64, "messages": msgs},
                               headers={"authorization": f"Bearer {keys[acc]}", **headers})
                except httpx.TransportError:
                    continue  # the replica died under this request: no answer, nothing promised
                sent.append((acc, prompt, r.status_code))
                if phase:
                    during[phase].append(r.status_code)
            time.sleep(0.05)

    with httpx.Client(timeout=15) as c:
        traffic(PHASE_S, c)
        victim = fleet.replicas[1]
        assert victim is not None
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        traffic(1.0, c)
        fleet.start_replica(1)
        fleet.wait_up(1, time.monotonic() + 30)
        traffic(PHASE_S, c)
        burst = budget_burst(fleet, keys["budget"])
        pg.cut()
        phase = "pg"
        traffic(PG_CUT_S, c)
        pg.restore()
        phase = ""
        traffic(PHASE_S, c)
        redis_proxy.cut()
        phase = "redis"
        traffic(REDIS_CUT_S, c)
        redis_proxy.restore()
        phase = ""
        traffic(PHASE_S, c)
        assert fleet.detector is not None
        fleet.detector.send_signal(signal.SIGKILL)
        fleet.detector.wait(10)
        fleet.start_detector()
        # until every hydra account is refused 403, within the deadline
        while not all(next(s for a, _, s in reversed(sent) if a == h) == 403 for h in HYDRA):
            assert time.monotonic() - start < DEADLINE_S, "the hydra was not blocked in time"
            traffic(1.0, c)
        blocked_everywhere = {
            (i, h): c.post(fleet.url(i) + "/v1/chat/completions", headers={"authorization": f"Bearer {keys[h]}"},
                           json={"model": "m", "messages": [{"role": "user", "content": "again"}]}).status_code
            for i in range(REPLICAS) for h in HYDRA}
        metrics = [metric_samples(c.get(fleet.url(i) + "/metrics").text) for i in range(REPLICAS)]
        # capture drains (the spools of every replica, the restarted one included)
        answered = [p for _, p, s in sent if s == 200]
        deadline = time.monotonic() + 30
        while store.count_events() < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        # the restarted detector leads again and resumed from its checkpoint, not from zero
        while True:
            try:
                detector_metrics = metric_samples(c.get(f"http://127.0.0.1:{fleet.metrics_port}/metrics").text)
                # caught up, and the step that folded the events in has published (a step
                # folds, then judges and publishes: a scrape between the two sees the fold only)
                if (detector_metrics[("distillguard_detector_events_total", ())] >= store.count_events() - len(HYDRA) * REPLICAS
                        and detector_metrics.get(("distillguard_detector_verdicts", (("action", "block"),))) == len(HYDRA)):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() - start < DEADLINE_S + 30, "the restarted detector did not catch up"
            time.sleep(0.3)

    watching.set()
    watcher.join(10)
    # the same events replayed in one process, window by window
    export_log(store, fleet.tmp / "log")
    replayed = scan(fleet.tmp / "log", fleet.tmp / "scan", config=fleet.detect_config).verdicts
    replay_first = dict(zip(replayed.column("account_id").to_pylist(), replayed.column("first_flagged_ts").to_pylist(), strict=True))
    assert all(replay_first.get(h) is not None for h in HYDRA), f"the single-process replay misses some: {replay_first}"
    assert set(first_throttled) == set(HYDRA), f"the fleet never published a throttle for some: {first_throttled}"
    # where the fleet first throttled each account, in windows from the start of the window after
    # which the replay first throttles it (`first_flagged_ts` is that window's end)
    window = WINDOW_S * 1e6
    offsets = {h: round((first_throttled[h] - replay_first[h].timestamp() * 1e6) / window + 1, 2) for h in HYDRA}
    assert all(-1 <= off < 2 for off in offsets.values()), (
        f"the fleet throttled hydra accounts outside the replay's window, give or take one: {offsets}")
    assert during["pg"].count(200) > 20 and during["redis"].count(200) > 10, {k: len(v) for k, v in during.items()}
    assert detector_metrics[("distillguard_detector_resumed_from", ())] > 0, "the restarted detector started from zero"
    # the token budget held across the replicas: at most one reservation over
    ok = [u for u in burst if u is not None]
    reservation = max(u["prompt_tokens"] for u in ok) + BURST_MAX_TOKENS
    assert sum(u["total_tokens"] for u in ok) <= BUDGET + reservation and len(ok) < BURST
    statuses = {s for _, _, s in sent}
    assert statuses <= {200, 429, 403}, f"no 5xx or other errors: {sorted(statuses)}"
    assert all(v == 403 for v in blocked_everywhere.values()), blocked_everywhere
    for b in BENIGN:
        assert {s for a, _, s in sent if a == b} == {200}, f"benign {b} was refused"
    rows = [r for batch in store.iter_events() for r in batch if r["prompt"] != "again"]
    burst_rows = [r for r in rows if r["account_id"] == "budget"]
    assert sorted(r["prompt"] for r in burst_rows) == sorted(f"budget question {i} please answer" for i in range(BURST))
    rows = [r for r in rows if r["account_id"] != "budget"]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["prompt"]] = counts.get(r["prompt"], 0) + 1
    missing = [p for p in answered if p not in counts]
    assert not missing, f"{len(missing)} answered exchanges are missing from the capture, e.g. {missing[:3]}"
    assert max(counts.values()) == 1, "an exchange was captured twice"
    assert {p for _, p, _ in sent} >= set(counts), "the capture holds an exchange nobody sent"
    for m in metrics:
        assert m[("distillguard_capture_rows_dropped_total", ())] == 0
        assert m[("distillguard_capture_spool_refused_total", ())] == 0
        assert m[("distillguard_verdicts", (("action", "block"),))] == len(HYDRA)
        assert not any(name == "distillguard_requests_total" and dict(labels)["status"].startswith("5")
                       for name, labels in m if name == "distillguard_requests_total")
    assert detector_metrics[("distillguard_detector_leading", ())] == 1
    assert detector_metrics[("distillguard_detector_verdicts", (("action", "block"),))] == len(HYDRA)
    assert time.monotonic() - start < DEADLINE_S + 40
