"""Token budgets reserved before an exchange and settled after, in memory and on the real Redis."""

from __future__ import annotations

import asyncio
import random

import pytest

from distillguard.enforce import Limiter, LimitsConfig, LimitSet, Reservation

from .support import BURST_OPTIONS, fresh_prefix

BUDGET = 200  # tokens per minute of the account under test
RESERVE = 30  # tokens each request reserves (prompt + max_tokens)


def limiters(storage: str, n: int) -> list[Limiter]:
    """`n` limiters that share counters: replicas on one Redis, or one process's limiter."""
    cfg = LimitsConfig(account=LimitSet(100_000, None, BUDGET, None), key=LimitSet(100_000, None, None, None))
    if storage == "memory://":
        return [Limiter(cfg)] * n
    prefix = fresh_prefix()
    return [Limiter(cfg, storage, key_prefix=prefix, redis_options=BURST_OPTIONS) for _ in range(n)]


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


def test_throttled_requests_share_the_windows_at_a_scaled_limit(storage: str) -> None:
    async def run() -> None:
        [lim] = limiters(storage, 1)
        s = [("account", "thr")]
        # throttle factor 0.1: 20 tokens a minute while throttled
        assert (await lim.check(s, tokens=25, throttled=True)).allowed
        refused = await lim.check(s, tokens=1, throttled=True)
        assert not refused.allowed and refused.limit == BUDGET // 10
        # unthrottled, the same window (holding 25) is checked against the full budget
        assert (await lim.check(s, tokens=150)).allowed
        assert (await lim.tokens_used("account", "thr"))["tokens_per_minute"] == 175
        assert not (await lim.check(s, tokens=1, throttled=True)).allowed
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


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_decision_that_flips_between_throttled_and_not_never_overshoots(storage: str, strategy: str, seed: int) -> None:
    """One account whose requests are throttled or not at random (as the first-request check
    or an arriving verdict makes them), concurrently over three replicas: the account's
    request budget is never exceeded, its token budget by at most one reservation, and a
    throttled request is admitted only while the shared window is under the scaled limit."""
    requests, tokens, factor, reserve = 20, 120, 0.25, 10

    async def run() -> None:
        rng = random.Random(seed)
        cfg = LimitsConfig(account=LimitSet(None, requests, None, tokens), key=LimitSet(None, None, None, None),
                           throttle_factor=factor, strategy=strategy)  # type: ignore[arg-type]
        prefix = fresh_prefix()
        lims = [Limiter(cfg)] if storage == "memory://" else [Limiter(cfg, storage, key_prefix=prefix, redis_options=BURST_OPTIONS) for _ in range(3)]
        subjects = [("account", "flips")]
        flags = [rng.random() < 0.5 for _ in range(200)]

        async def one(i: int) -> tuple[bool, int]:
            res = await lims[i % len(lims)].check(subjects, throttled=flags[i], tokens=reserve)
            if not res.allowed:
                return flags[i], 0
            used = rng.randint(1, reserve)
            await lims[i % len(lims)].settle(res.reservation, used)
            return flags[i], used

        flags[:2] = [True, False]  # served one after the other: each kind is served at least once
        first = [await one(0), await one(1)]
        assert all(u for _, u in first)
        served = [(t, u) for t, u in [*first, *await asyncio.gather(*(one(i) for i in range(2, len(flags))))] if u]
        assert len(served) <= requests
        assert sum(t for t, _ in served) <= requests * factor
        assert sum(u for _, u in served) <= tokens + reserve
        assert (await lims[0].tokens_used("account", "flips"))["tokens_per_day"] == sum(u for _, u in served)
        for lim in lims:
            await lim.aclose()

    asyncio.run(run())


def test_a_memory_token_window_starts_empty_when_its_period_rolls_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory ledger reuses a window's counter key while the window lasts: at the period's
    end a reservation lands in a new, empty window, and a refusal's retry names that end."""
    from distillguard.enforce import _tokens
    from distillguard.enforce._tokens import MemoryLedger, Refused, Reservation, Window

    clock = [1_000_000.0]
    monkeypatch.setattr(_tokens.time, "time", lambda: clock[0])
    ledger = MemoryLedger()
    w = Window("acct:a:minute", 100, 60)

    async def run() -> None:
        first = ledger.reserve_now([w], 100)
        assert isinstance(first, Reservation)
        clock[0] += 15.0
        full = ledger.reserve_now([w], 1)
        assert isinstance(full, Refused) and full.retry_after == 5  # the window ends at 1,000,020
        clock[0] += 5.0
        again = ledger.reserve_now([w], 30)
        assert isinstance(again, Reservation) and again.keys != first.keys
        assert await ledger.used(w) == 30

    asyncio.run(run())
