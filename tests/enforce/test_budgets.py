"""Token budgets reserved before an exchange and settled after, in memory and on the real Redis."""

from __future__ import annotations

import asyncio
import random

import pytest

from distillguard.enforce import Limiter, LimitsConfig, LimitSet, Reservation

from .support import fresh_prefix

BUDGET = 200  # tokens per minute of the account under test
RESERVE = 30  # tokens each request reserves (prompt + max_tokens)


def limiters(storage: str, n: int) -> list[Limiter]:
    """`n` limiters that share counters: replicas on one Redis, or one process's limiter."""
    cfg = LimitsConfig(account=LimitSet(100_000, None, BUDGET, None), key=LimitSet(100_000, None, None, None))
    if storage == "memory://":
        return [Limiter(cfg)] * n
    prefix = fresh_prefix()
    return [Limiter(cfg, storage, key_prefix=prefix) for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_concurrent_burst_overshoots_by_at_most_one_reservation(storage: str, seed: int) -> None:
    """100 concurrent requests against a 200-token budget, spread over three replicas: what
    is served stays within the budget plus one reservation, and settling returns the rest."""

    async def run() -> None:
        rng = random.Random(seed)
        lims = limiters(storage, 3)
        subjects = [("key", "k"), ("account", "burst")]
        gate = asyncio.Event()
        checked = 0

        async def one(i: int) -> int:
            nonlocal checked
            lim = lims[i % len(lims)]
            res = await lim.check(subjects, tokens=RESERVE)
            checked += 1
            if checked == 100:
                gate.set()
            if not res.allowed:
                assert res.budget == "tokens_per_minute" and res.scope == "account" and res.retry_after >= 1
                return 0
            await gate.wait()  # every request is admitted or refused before any settles
            used = rng.randint(1, RESERVE)
            await lim.settle(res.reservation, used)
            return used

        used = await asyncio.gather(*(one(i) for i in range(100)))
        served = [u for u in used if u]
        assert len(served) == -(-BUDGET // RESERVE), (seed, len(served))  # ceil: the last one overshoots
        assert sum(served) <= BUDGET + RESERVE
        # settled: the window holds what was used, not what was reserved
        assert (await lims[0].tokens_used("account", "burst"))["tokens_per_minute"] == sum(served)
        for lim in {id(x): x for x in lims}.values():
            await lim.aclose()

    asyncio.run(run())


def test_settling_gives_tokens_back_and_a_failure_returns_all(storage: str) -> None:
    async def run() -> None:
        [lim] = limiters(storage, 1)
        s = [("account", "settle")]
        big = await lim.check(s, tokens=150)
        assert big.allowed and isinstance(big.reservation, Reservation) and big.reservation.tokens == 150
        second = await lim.check(s, tokens=150)  # 150 < 200: admitted, the window now holds 300
        assert second.allowed
        assert not (await lim.check(s, tokens=1)).allowed
        await lim.settle(big.reservation, 20)
        await lim.settle(second.reservation, 0)  # the exchange failed
        assert (await lim.tokens_used("account", "settle"))["tokens_per_minute"] == 20
        assert (await lim.check(s, tokens=10)).allowed
        # queued settlements (Redis: applied by flush_charges; memory: at once)
        third = await lim.check(s, tokens=100)
        lim.settle_later(third.reservation, 5)
        await lim.flush_charges()
        assert (await lim.tokens_used("account", "settle"))["tokens_per_minute"] == 20 + 10 + 5
        await lim.aclose()

    asyncio.run(run())


def test_throttled_budgets_are_separate_and_scaled(storage: str) -> None:
    async def run() -> None:
        [lim] = limiters(storage, 1)
        s = [("account", "thr")]
        # throttle factor 0.1: 20 tokens a minute while throttled
        assert (await lim.check(s, tokens=25, throttled=True)).allowed
        refused = await lim.check(s, tokens=1, throttled=True)
        assert not refused.allowed and refused.limit == BUDGET // 10
        assert (await lim.check(s, tokens=25)).allowed  # the normal budget is untouched
        await lim.aclose()

    asyncio.run(run())


def test_a_refused_reservation_charges_nothing(storage: str) -> None:
    """Refusals leave every window as it was (no window is charged when another is full)."""

    async def run() -> None:
        cfg = LimitsConfig(key=LimitSet(None, None, 50, None), account=LimitSet(None, None, 1000, None))
        lim = Limiter(cfg, storage, key_prefix=fresh_prefix())
        s = [("key", "small"), ("account", "wide")]
        assert (await lim.check(s, tokens=60)).allowed
        for _ in range(5):
            r = await lim.check(s, tokens=60)
            assert not r.allowed and r.scope == "key"
        assert (await lim.tokens_used("account", "wide"))["tokens_per_minute"] == 60
        await lim.aclose()

    asyncio.run(run())
