"""Every Redis client of the gateway and the detector survives connections ended while idle.

A TCP proxy in front of the real Redis plays a middlebox that ends any connection idle for
`IDLE_S`: with a FIN, with a RST on the next byte, or by silently dropping every later byte.
Requests come in bursts separated by gaps longer than that, so each burst finds the previous
burst's connections dead. A limits call that raised would make the gateway serve the request
unchecked (limits fail open during a Redis outage), so every call must succeed and the
budgets must come out exact; an announcement of new verdicts must reach the subscribers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from distillguard._redis import RedisOptions
from distillguard.enforce import Limiter, LimitsConfig, LimitSet, LimitsTimeout
from distillguard.gateway import GatewayConfig
from distillguard.gateway._verdicts import VerdictAnnouncer, VerdictFollower, channel

from .proxy import IdleMode, TcpProxy
from .support import keyed_client, scrape

#: the middlebox's idle timeout, and the gap between bursts (longer: every burst finds dead connections)
IDLE_S = 1.0
GAP_S = 2.0
BURSTS = 3
PER_BURST = 3
#: the request budget and the token budget (each admitted request reserves RESERVE, uses USED)
REQUESTS = 5
TOKENS = 500
RESERVE, USED = 150, 100
#: a call that takes longer has hung (a silently dropped connection without a timeout)
HUNG_S = 10.0
#: the options under test: health checks below the middlebox's idle timeout, as docs/gateway.md
#: tells operators to set them for their path to Redis; the default timeouts and deadline
OPTIONS = RedisOptions(health_check_interval=IDLE_S / 2)
MODES: tuple[IdleMode, ...] = ("close", "reset", "drop")


@pytest.fixture(params=MODES)
def idle_redis(request: pytest.FixtureRequest, redis_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """The Redis URL through a proxy ending idle connections as the param says, and the proxy."""
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379, idle_timeout=IDLE_S, idle_mode=request.param)
    yield f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}", proxy
    proxy.close()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A fresh namespace for one limiter; its keys are deleted afterwards."""
    name = f"dgtest-idle-{uuid.uuid4().hex[:8]}"
    yield name
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(f"{name}*"):
        r.delete(key)
    r.close()


async def _outcome(call: Any) -> str:
    """"allowed", "refused", or how the call failed (which the gateway would serve unchecked)."""
    try:
        got = await asyncio.wait_for(call, HUNG_S)
    except LimitsTimeout:
        return "past the deadline"
    except TimeoutError:
        return "hung"
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return f"{type(exc).__name__}: {exc}"
    return "allowed" if got else "refused"


def test_budgets_hold_when_idle_connections_are_ended(idle_redis: tuple[str, TcpProxy], prefix: str) -> None:
    url, proxy = idle_redis
    config = LimitsConfig(
        key=LimitSet(requests_per_minute=None, requests_per_day=REQUESTS, tokens_per_minute=None, tokens_per_day=None),
        account=LimitSet(requests_per_minute=None, requests_per_day=None, tokens_per_minute=None, tokens_per_day=TOKENS),
    )

    async def run() -> tuple[list[str], list[str], dict[str, int]]:
        limiter = Limiter(config, url, prefix, redis_options=OPTIONS)

        async def request() -> bool:
            return (await limiter.check([("key", "k")])).allowed

        async def tokens() -> bool:
            got = await limiter.check([("account", "a")], tokens=RESERVE)
            if got.allowed:
                await limiter.settle(got.reservation, USED)  # gives RESERVE - USED back
            return got.allowed

        requests_seen: list[str] = []
        tokens_seen: list[str] = []
        try:
            for burst in range(BURSTS):
                if burst:
                    await asyncio.sleep(GAP_S)
                for _ in range(PER_BURST):
                    a, b = await asyncio.gather(_outcome(request()), _outcome(tokens()))
                    requests_seen.append(a)
                    tokens_seen.append(b)
            used = await limiter.tokens_used("account", "a")
        finally:
            await limiter.aclose()
        return requests_seen, tokens_seen, used

    requests_seen, tokens_seen, used = asyncio.run(run())
    assert proxy.idle_ended > 0, "the proxy ended no idle connection: the test tested nothing"
    # Every call was answered (none would have been served unchecked), and exactly the budgets
    # were admitted: the refusals show the counters were never lost.
    assert set(requests_seen) <= {"allowed", "refused"}, requests_seen
    assert set(tokens_seen) <= {"allowed", "refused"}, tokens_seen
    assert requests_seen.count("allowed") == REQUESTS, requests_seen
    assert tokens_seen.count("allowed") == TOKENS // USED, tokens_seen
    assert used["tokens_per_day"] == TOKENS


def test_verdict_announcements_arrive_after_idle_gaps(idle_redis: tuple[str, TcpProxy], redis_url: str, prefix: str) -> None:
    """The detector's announcer and a replica's subscriber, both through the idle-ending proxy."""
    url, proxy = idle_redis

    async def run() -> list[bool]:
        follower = VerdictFollower(None, None, redis_url=url, redis_prefix=prefix, redis_options=OPTIONS)  # type: ignore[arg-type]
        announcer = VerdictAnnouncer(url, prefix, OPTIONS)
        listening = asyncio.get_running_loop().create_task(follower.listen())
        woken = []
        try:
            await _subscribed(redis_url, channel(prefix))
            for version in range(1, BURSTS + 1):
                await asyncio.sleep(GAP_S)
                follower.wake.clear()
                sent = await asyncio.wait_for(asyncio.to_thread(announcer.announce, version), HUNG_S)
                try:
                    await asyncio.wait_for(follower.wake.wait(), IDLE_S)
                    woken.append(sent)
                except TimeoutError:
                    woken.append(False)
        finally:
            listening.cancel()
            announcer.close()
        return woken

    woken = asyncio.run(run())
    assert proxy.idle_ended > 0, "the proxy ended no idle connection: the test tested nothing"
    assert woken == [True] * BURSTS


async def _subscribed(redis_url: str, name: str) -> None:
    """Wait until a subscriber listens on `name` (asked of Redis directly, not through the proxy)."""
    import redis.asyncio as aioredis

    direct: Any = aioredis.from_url(redis_url)
    try:
        deadline = time.monotonic() + HUNG_S
        while not (await direct.pubsub_numsub(name))[0][1]:
            assert time.monotonic() < deadline, "the follower never subscribed"
            await asyncio.sleep(0.05)
    finally:
        await direct.aclose()


#: how long a limits call may take, with the default deadline (0.5 s), before the test calls it
#: unbounded (generous: the bound is the point, not its speed)
BOUND_S = 2.0
#: the default options with retries enough that only the deadline can end a call into a black
#: hole within BOUND_S (each retry reconnects and waits out its timeouts)
BLACK_HOLE_OPTIONS = RedisOptions(retries=20)


@pytest.fixture
def proxied_redis(redis_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """The Redis URL through a proxy that the test can turn into a black hole, and the proxy."""
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    yield f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}", proxy
    proxy.close()


def test_a_limits_call_into_a_black_hole_ends_at_the_deadline(proxied_redis: tuple[str, TcpProxy], prefix: str) -> None:
    """A Redis that accepts connections and never answers: each limits call (counting plus
    reservation, and a settlement) fails within the deadline instead of ~10 s of retries; no
    reservation comes back, so nothing is settled against it; once Redis answers again the
    budgets hold exactly, with nothing given back that was not charged."""
    url, proxy = proxied_redis
    config = LimitsConfig(
        key=LimitSet(requests_per_minute=None, requests_per_day=REQUESTS, tokens_per_minute=None, tokens_per_day=None),
        account=LimitSet(requests_per_minute=None, requests_per_day=None, tokens_per_minute=None, tokens_per_day=TOKENS),
    )
    subjects: list[Any] = [("key", "k"), ("account", "a")]

    async def run() -> tuple[list[float], list[str], int, list[bool], int]:
        limiter = Limiter(config, url, prefix, redis_options=BLACK_HOLE_OPTIONS)
        try:
            first = await limiter.check(subjects, tokens=RESERVE)
            assert first.allowed and first.reservation is not None
            limiter.settle_later(first.reservation, USED)  # queued: flushed into the black hole
            proxy.black_hole()
            took, failures = [], []
            for call in (lambda: limiter.check(subjects, tokens=RESERVE), limiter.flush_charges):
                t0 = time.monotonic()
                try:
                    await asyncio.wait_for(call(), HUNG_S)
                    failures.append("answered")
                except LimitsTimeout:
                    failures.append("deadline")
                except TimeoutError:
                    failures.append("hung")
                took.append(time.monotonic() - t0)
            proxy.restore()
            charged = (await limiter.tokens_used("account", "a"))["tokens_per_day"]
            allowed = []
            for _ in range(REQUESTS + 2):
                got = await limiter.check([("key", "k")])
                allowed.append(got.allowed)
            again = (await limiter.check([("account", "a")], tokens=TOKENS)).allowed
            return took, failures, charged, allowed, again
        finally:
            await limiter.aclose()

    took, failures, charged, allowed, again = asyncio.run(run())
    assert failures == ["deadline", "deadline"], failures
    assert all(t < BOUND_S for t in took), took
    # the settlement into the black hole was dropped: the first reservation stays charged in
    # full (never less), and the timed-out one never reached Redis
    assert charged == RESERVE
    # the first request and the REQUESTS - 1 after the outage: the budget is enforced again
    assert allowed == [True] * (REQUESTS - 1) + [False] * 3, allowed
    assert again  # TOKENS - RESERVE left: a window not yet full admits


def test_a_gateway_serves_through_a_black_holed_redis_and_enforces_after(
    proxied_redis: tuple[str, TcpProxy], prefix: str, tmp_path: Path
) -> None:
    """Through the gateway: while Redis is a black hole a request is answered within the
    deadline, served unchecked (limits fail open) and counted in `/metrics`; once Redis answers
    again the request budget refuses as before."""
    url, proxy = proxied_redis
    budget = 2
    cfg = GatewayConfig(db=f"sqlite:///{tmp_path / 'h.db'}", detect=False, capture_interval=0.02,
                        redis=url, redis_prefix=prefix, redis_options=BLACK_HOLE_OPTIONS,
                        limits=LimitsConfig(key=LimitSet(None, budget, None, None)))
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}

    def failed_open(c: Any) -> float:
        return sum(v for (name, _labels), v in scrape(c).items() if name == "distillguard_limits_failed_open_total")

    with keyed_client(cfg, "held", timeout=HUNG_S) as (c, _gw):
        before = c.post("/v1/chat/completions", json=body).status_code
        proxy.black_hole()
        t0 = time.monotonic()
        during = c.post("/v1/chat/completions", json=body).status_code
        took = time.monotonic() - t0
        opened = failed_open(c)
        proxy.restore()
        after = [c.post("/v1/chat/completions", json=body).status_code for _ in range(2)]
    assert took < BOUND_S, took
    assert (before, during, opened) == (200, 200, 1)
    # one of the budget's two was spent before the outage; the request during it was not counted
    assert after == [200, 429], after
