"""Limiter.reserve: a batch's requests counted at once, all or nothing, with what was left."""

from __future__ import annotations

import asyncio

from distillguard.enforce import Limiter, LimitsConfig, LimitSet


def test_reserve_is_all_or_nothing_and_says_what_is_left() -> None:
    async def go() -> None:
        lim = Limiter(LimitsConfig(key=LimitSet(3, 10, None, None), account=LimitSet(None, 6, None, None)))
        subjects = [("key", "k1"), ("account", "a1")]
        assert (await lim.reserve(subjects, 4, periods=("day",))).allowed  # the minute budget (3) is not asked
        over = await lim.reserve(subjects, 3, periods=("day",))
        assert not over.allowed and (over.scope, over.budget, over.limit, over.remaining) == ("account", "requests_per_day", 6, 2)
        assert (await lim.reserve(subjects, 2, periods=("day",))).allowed  # the refusal counted nothing
        assert not (await lim.check(subjects)).allowed  # the account's day budget is spent
        minute = await lim.reserve([("key", "k2")], 4)  # with the minute budget asked
        assert not minute.allowed and (minute.budget, minute.remaining) == ("requests_per_minute", 3)
        throttled = await lim.reserve([("key", "k3")], 2, throttled=True, periods=("day",))  # 10 * 0.1 = 1 left
        assert not throttled.allowed and throttled.remaining == 1

    asyncio.run(go())
