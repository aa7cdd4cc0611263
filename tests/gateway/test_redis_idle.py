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
from typing import Any
from urllib.parse import urlsplit

import pytest

from distillguard._redis import RedisOptions
from distillguard.enforce import Limiter, LimitsConfig, LimitSet
from distillguard.gateway._verdicts import VerdictAnnouncer, VerdictFollower, channel

from .proxy import IdleMode, TcpProxy

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
#: the options under test: health checks and timeouts below the middlebox's idle timeout, as
#: docs/gateway.md tells operators to set them for their path to Redis
OPTIONS = RedisOptions(health_check_interval=IDLE_S / 2, socket_timeout=IDLE_S / 2, socket_connect_timeout=IDLE_S / 2)
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
