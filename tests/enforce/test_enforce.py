"""Limits and policy decisions."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

import distillguard.enforce as enforce
from distillguard._errors import ConfigError
from distillguard.enforce import (
    Limiter,
    LimitsConfig,
    LimitSet,
    Override,
    Policy,
    ThinkFilter,
    strip_think,
)
from distillguard.enforce._limits import request_counter_key

from .support import fresh_prefix

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_exports_match_all() -> None:
    import distillguard.gateway as gateway

    for mod in (enforce, gateway):
        public = {n for n, v in vars(mod).items() if not n.startswith("_") and getattr(v, "__module__", "").startswith(mod.__name__ + "._")}
        assert public <= set(mod.__all__), public - set(mod.__all__)
        assert all(hasattr(mod, n) for n in mod.__all__)


def test_request_limits_per_key_account_and_campaign(storage: str) -> None:
    async def run() -> None:
        lim = Limiter(LimitsConfig(key=LimitSet(3, None, None, None), account=LimitSet(5, None, None, None), campaign=LimitSet(7, None, None, None)),
                      storage, key_prefix=fresh_prefix())
        key_a = [("key", "k1"), ("account", "acc")]
        key_b = [("key", "k2"), ("account", "acc")]
        assert [(await lim.check(key_a)).allowed for _ in range(4)] == [True, True, True, False]
        refused = await lim.check(key_a)
        assert refused.scope == "key" and refused.budget == "requests_per_minute" and 1 <= refused.retry_after <= 60
        assert "Retry after" in refused.message() and "key k1" in refused.message()
        # the account's budget is shared by its keys: 3 hits + 2 more allowed
        assert [(await lim.check(key_b)).allowed for _ in range(2)] == [True, True]
        assert (await lim.check(key_b)).scope == "account"
        # a campaign's budget spans its accounts
        members = [[("key", f"c{i}"), ("account", f"m{i}"), ("campaign", "C1")] for i in range(4)]
        results = [(await lim.check(m)).allowed for _ in range(2) for m in members]
        assert results.count(True) == 7 and results[-1] is False
        await lim.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_in_memory_fast_path_counts_as_the_storage_api_does(seed: int) -> None:
    """The fixed-window fast path (a plain call) and the `limits` fixed-window strategy (the
    storage's coroutine API) refuse the same requests, also when per-account limits change in between (the
    cached plans are dropped)."""

    async def run() -> None:
        rng = random.Random(seed)
        cfg = LimitsConfig(key=LimitSet(4, 9, None, None), account=LimitSet(6, None, None, None), campaign=LimitSet(8, 20, None, None))
        fast, slow = Limiter(cfg), Limiter(cfg)
        slow._fast = False
        assert fast._fast
        for step in range(120):
            if step == 60:
                for lim in (fast, slow):
                    lim.account_overrides["a1"] = LimitSet(2, None, None, None)
            subj = [("key", f"k{rng.randrange(3)}"), ("account", f"a{rng.randrange(2)}"), ("campaign", "C")]
            throttled = rng.random() < 0.2
            a, b = await fast.check(subj, throttled=throttled), await slow.check(subj, throttled=throttled)
            assert (a.allowed, a.scope, a.subject, a.budget, a.limit) == (b.allowed, b.scope, b.subject, b.budget, b.limit), (seed, step)
        # the same counters, under our own key
        assert await fast._storage.get(request_counter_key("campaign", "C", "minute")) > 0

    asyncio.run(run())


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window"])
def test_every_strategy_counts_a_subject_in_one_window_under_our_key(storage: str, strategy: str) -> None:
    """Each `limits` strategy counts a subject's throttled and unthrottled requests in one
    window (the counter key names the subject and the period, never the limit), stored
    under `request_counter_key`; a batch is counted all or nothing."""

    async def run() -> None:
        cfg = LimitsConfig(account=LimitSet(6, None, None, None), key=LimitSet(None, None, None, None),
                           throttle_factor=0.5, strategy=strategy)  # type: ignore[arg-type]
        lim = Limiter(cfg, storage, key_prefix=fresh_prefix())
        s = [("account", "a/1")]
        assert [(await lim.check(s, throttled=True)).allowed for _ in range(3)] == [True, True, True]
        assert [(await lim.check(s)).allowed for _ in range(4)] == [True, True, True, False]
        assert not (await lim.check(s, throttled=True)).allowed
        refused = await lim.check(s)
        assert (refused.scope, refused.subject, refused.budget, refused.limit) == ("account", "a/1", "requests_per_minute", 6)
        assert 1 <= refused.retry_after <= 60
        key = request_counter_key("account", "a/1", "minute")
        assert key == "DG/req/account/a/1/minute"
        st = lim._storage
        if strategy == "fixed-window":
            counted = await st.get(key)
        elif strategy == "moving-window":
            counted = (await st.get_moving_window(key, 6, 60))[1]
        else:
            counted = (await st.get_sliding_window(key, 60))[2]
        assert counted >= 6
        b = [("account", "b")]
        big = await lim.reserve(b, 7)
        assert not big.allowed and big.remaining == 6 and big.budget == "requests_per_minute"
        assert (await lim.reserve(b, 5)).allowed
        assert [(await lim.check(b)).allowed for _ in range(2)] == [True, False]
        await lim.aclose()

    asyncio.run(run())


def test_throttle_lowers_limits_and_tokens_are_budgeted(storage: str) -> None:
    async def run() -> None:
        lim = Limiter(LimitsConfig(account=LimitSet(100, None, 1000, None), throttle_factor=0.05), storage, key_prefix=fresh_prefix())
        s = [("account", "a")]
        assert sum([(await lim.check(s, throttled=True)).allowed for _ in range(10)]) == 5
        assert sum([(await lim.check(s)).allowed for _ in range(10)]) == 10
        await lim.charge_tokens(s, 600)
        assert (await lim.check(s)).allowed
        await lim.charge_tokens(s, 600)  # used without a reservation: counted in full, then refused
        r = await lim.check(s)
        assert not r.allowed and r.budget == "tokens_per_minute" and r.limit == 1000 and r.retry_after >= 1
        # per-account limits (the admin API's) replace the defaults on both storages
        lim.account_overrides["b"] = LimitSet(2, None, None, None)
        assert [(await lim.check([("account", "b")])).allowed for _ in range(3)] == [True, True, False]
        await lim.aclose()

    asyncio.run(run())


def test_limits_config_reports_every_problem() -> None:
    with pytest.raises(ConfigError) as e:
        LimitsConfig(key=LimitSet(0, None, None, None), throttle_factor=2.0, strategy="bogus")  # type: ignore[arg-type]
    msg = str(e.value)
    assert "key.requests_per_minute" in msg and "throttle_factor" in msg and "strategy" in msg
    with pytest.raises(ConfigError, match="unknown fields"):
        LimitsConfig.from_dict({"acount": {}})
    cfg = LimitsConfig.from_dict({"account": {"requests_per_minute": 7}, "strategy": "moving-window"})
    assert cfg.account.requests_per_minute == 7 and cfg.account.requests_per_day == LimitSet().requests_per_day
    with pytest.raises(ConfigError, match="Unsupported limits storage"):
        Limiter(storage_url="mongodb://x")


def test_policy_verdicts_overrides_and_degrade() -> None:
    p = Policy()
    assert p.decide("a").action == "allow"
    n = p.apply_verdicts([
        {"account_id": "a", "action": "throttle", "campaign_id": "C1", "reasons": '["shares template T3 with 12 accounts"]'},
        {"account_id": "b", "action": "block", "campaign_id": "C1", "reasons": "[]"},
        {"account_id": "c", "action": "monitor"},
        {"account_id": "d", "action": "not-an-action"},
    ])
    assert n == 3
    a = p.decide("a")
    assert (a.action, a.source, a.campaign_id, a.degraded) == ("throttle", "verdict", "C1", True)
    assert a.reason == "shares template T3 with 12 accounts"
    assert p.decide("b").blocked and "contact the provider" in p.decide("b").block_message("b")
    assert p.decide("c").action == "monitor" and not p.decide("c").degraded
    assert p.decide("d").action == "allow"
    assert p.apply_verdicts([{"account_id": "a", "action": "throttle", "campaign_id": "C1", "reasons": '["shares template T3 with 12 accounts"]'}]) == 0
    p.set_override(Override("b", "benign", NOW, "alice", "a classroom"))
    assert p.decide("b").action == "allow" and p.decide("b").source == "override"
    p.apply_verdicts([{"account_id": "b", "action": "block"}])
    assert p.decide("b").action == "allow", "a manual override wins over later verdicts"
    p.set_override(Override("c", "degrade", NOW))
    assert p.decide("c").degraded and p.decide("c").action == "degrade"
    with pytest.raises(ConfigError, match="not one of"):
        p.set_override(Override("c", "explode", NOW))
    assert set(p.snapshot()) == {"a", "b", "c"}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_think_filter_matches_strip_think_on_any_split(seed: int) -> None:
    rng = random.Random(seed)
    text = "Intro. <think>secret chain of thought, step 1; step 2</think>The answer is 4.<think>more</think> Done."
    cuts = sorted(rng.sample(range(1, len(text)), 12))
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    f = ThinkFilter()
    out = "".join(f.feed(p) for p in pieces) + f.finish()
    answer, reasoning = strip_think(text)
    assert out == "Intro. The answer is 4. Done.", f"seed {seed}: {pieces}"
    assert answer == "Intro. The answer is 4. Done."
    assert "secret chain" in "".join(f.reasoning) and "secret chain" in reasoning


class _Keys:
    """A stand-in for detect's `CampaignKeys`: a request matches when it carries key ("sys", 1)."""

    def __init__(self, keys: dict[tuple[str, int], str]) -> None:
        self.keys = keys

    def match(self, keys: list[tuple[str, int]]) -> list[tuple[str, int]] | None:
        found = [k for k in keys if k in self.keys]
        return found or None


def test_a_first_request_match_holds_until_the_accounts_first_verdict() -> None:
    p = Policy()
    p.set_campaign_keys(_Keys({("sys", 1): "h0"}), "throttle")
    assert p.first_request("new", p.match_first_request([("sys", 2)])) is None
    assert p.held_first_request("new") is None, "a request that matched nothing holds nothing"
    matched = p.first_request("new", p.match_first_request([("sys", 1)]))
    assert matched is not None and matched.throttled and "h0" in (matched.reason or "")
    assert p.held_first_request("new") == matched  # its next requests, whatever they carry
    p.set_campaign_keys(_Keys({("sys", 1): "h0"}), "throttle")  # republished unchanged: still held
    assert p.held_first_request("new") == matched
    p.apply_verdicts([{"account_id": "new", "action": "allow"}])
    assert p.held_first_request("new") is None and p.decide("new").source == "verdict"
    p.first_request("other", [("sys", 1)])
    p.set_override(Override("other", "benign", NOW))
    assert p.held_first_request("other") is None
    p.first_request("third", [("sys", 1)])
    p.set_campaign_keys(_Keys({("sys", 1): "h0"}), "block")  # another action: matches are redone
    assert p.held_first_request("third") is None
