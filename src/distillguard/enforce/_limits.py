"""Rate limits per key, account and campaign, on requests and tokens, per minute and per day.

Requests are counted by the `limits` library's strategies (fixed window, moving window, sliding
window counter) under counter keys of our own (`request_budget`): in memory by default (one process), Redis when
several gateway replicas must share one budget. Token budgets are reserved before
an exchange and settled after it (`_tokens.py`), in the same storage.

Each subject (key, account, campaign) has one set of windows, whatever its verdict: a
throttled request is counted in the same windows as an unthrottled one and checked against
the limit scaled by `throttle_factor`. So a decision that flips between throttled and not from
one request to the next (the first-request check, a verdict arriving) never opens a second
budget: whatever the mix, a window admits at most the unthrottled limit, and a throttled
request only while the window is under the throttled limit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from distillguard._errors import ConfigError
from distillguard._redis import RedisOptions
from distillguard.enforce._tokens import (
    MemoryLedger,
    RedisLedger,
    Refused,
    Reservation,
    TokenLedger,
    Window,
)

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.aio.strategies import RateLimiter

log = logging.getLogger("distillguard.enforce")

Scope = Literal["key", "account", "campaign"]
Strategy = Literal["fixed-window", "moving-window", "sliding-window"]
SCOPES: tuple[Scope, ...] = ("key", "account", "campaign")
_T = TypeVar("_T")


class LimitsTimeout(TimeoutError):
    """A limits call ran past its deadline (`RedisOptions.limits_deadline`)."""


@dataclass(frozen=True)
class LimitSet:
    """Budgets for one subject (a key, an account or a campaign); `None` means unlimited."""

    requests_per_minute: int | None = 600
    requests_per_day: int | None = 100_000
    tokens_per_minute: int | None = 2_000_000
    tokens_per_day: int | None = 100_000_000

    def scaled(self, factor: float) -> LimitSet:
        """The same budgets multiplied by `factor` (at least 1 where a budget is set)."""

        def s(v: int | None) -> int | None:
            return None if v is None else max(1, int(v * factor))

        return LimitSet(
            s(self.requests_per_minute),
            s(self.requests_per_day),
            s(self.tokens_per_minute),
            s(self.tokens_per_day),
        )

    def problems(self, where: str) -> list[str]:
        out = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                out.append(f"{where}.{f.name} must be a positive integer or null, got {v!r}")
        return out

    def to_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "limits") -> LimitSet:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(
                f"{where} has unknown fields {unknown}; use requests_per_minute, "
                "requests_per_day, tokens_per_minute, tokens_per_day."
            )
        out = cls(**data)
        problems = out.problems(where)
        if problems:
            raise ConfigError("; ".join(problems) + ".")
        return out


@dataclass(frozen=True)
class LimitsConfig:
    """Default budgets per scope, the throttle factor, and the counting strategy.

    Examples:
        >>> LimitsConfig(account=LimitSet(requests_per_minute=60)).throttle_factor
        0.1
    """

    key: LimitSet = field(default_factory=LimitSet)
    account: LimitSet = field(default_factory=LimitSet)
    campaign: LimitSet = field(
        default_factory=lambda: LimitSet(requests_per_minute=6000, requests_per_day=1_000_000)
    )
    throttle_factor: float = 0.1
    strategy: Strategy = "fixed-window"
    # Completion tokens reserved for a request that sets no max_tokens (the estimate of what
    # it may use until the upstream reports its usage); settled to the real usage after.
    reserve_completion_tokens: int = 4096

    def __post_init__(self) -> None:
        problems: list[str] = []
        for scope in SCOPES:
            problems += getattr(self, scope).problems(scope)
        rc = self.reserve_completion_tokens
        if isinstance(rc, bool) or not isinstance(rc, int) or rc < 1:
            problems.append(f"reserve_completion_tokens must be a positive integer, got {rc!r}")
        if not (0 < self.throttle_factor <= 1):
            problems.append(f"throttle_factor must be in (0, 1], got {self.throttle_factor!r}")
        if self.strategy not in ("fixed-window", "moving-window", "sliding-window"):
            problems.append(
                f"strategy must be fixed-window, moving-window or sliding-window, got {self.strategy!r}"
            )
        if problems:
            raise ConfigError("Invalid limits: " + "; ".join(problems) + ".")

    def for_scope(self, scope: Scope) -> LimitSet:
        out: LimitSet = getattr(self, scope)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key.to_dict(),
            "account": self.account.to_dict(),
            "campaign": self.campaign.to_dict(),
            "throttle_factor": self.throttle_factor,
            "strategy": self.strategy,
            "reserve_completion_tokens": self.reserve_completion_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LimitsConfig:
        base = cls()
        kw: dict[str, Any] = {}
        for scope in SCOPES:
            if scope in data:
                merged = {**getattr(base, scope).to_dict(), **dict(data[scope])}
                kw[scope] = LimitSet.from_dict(merged, scope)
        others = ("throttle_factor", "strategy", "reserve_completion_tokens")
        for name in others:
            if name in data:
                kw[name] = data[name]
        unknown = sorted(set(data) - {*SCOPES, *others})
        if unknown:
            raise ConfigError(
                f"Limits have unknown fields {unknown}; use key, account, campaign, "
                "throttle_factor, strategy, reserve_completion_tokens."
            )
        return replace(base, **kw)


@dataclass(frozen=True)
class LimitResult:
    """The outcome of a check: allowed, or which budget ran out and when to retry."""

    allowed: bool
    retry_after: int = 0
    scope: Scope | None = None
    subject: str | None = None
    budget: str | None = None
    limit: int | None = None
    until: float = 0.0
    # The tokens this request holds until `Limiter.settle`; None when nothing was reserved.
    reservation: Reservation | None = None
    #: requests left in the refusing budget (set by `Limiter.reserve`)
    remaining: int | None = None

    def message(self) -> str:
        if self.allowed:
            return "allowed"
        return (
            f"Rate limit reached for {self.scope} {self.subject}: {self.limit} "
            f"{self.budget.replace('_', ' ') if self.budget else ''}. "
            f"Retry after {self.retry_after} s, or ask the provider for a higher limit."
        )


ALLOWED = LimitResult(True)


def _lazy_memory_storage() -> Any:
    """limits' async memory storage with lazy expiry for counters.

    The stock `incr` starts a task on every call that scans every key to expire old ones; at
    thousands of requests a second that scan cost more than the rest of the request path.
    Counters here expire when touched, and a sweep runs at most every 10 s. Moving windows keep
    the stock implementation.
    """
    from limits.aio.storage import MemoryStorage

    class LazyMemoryStorage(MemoryStorage):
        STORAGE_SCHEME = ["distillguard+memory"]

        def __init__(self) -> None:
            super().__init__()
            self._swept = time.time()

        async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
            return self.incr_now(key, expiry, amount)

        def incr_now(self, key: str, expiry: float, amount: int = 1) -> int:
            """`incr` without the coroutine: the limiter's fixed-window checks call it directly."""
            now = time.time()
            if self.expirations.get(key, 0.0) <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
            value = self.storage[key] + amount
            self.storage[key] = value
            if value == amount:
                self.expirations[key] = now + expiry
            if now - self._swept > 10.0:
                self._swept = now
                for k in [k for k, t in self.expirations.items() if t <= now]:
                    self.storage.pop(k, None)
                    self.expirations.pop(k, None)
                    self.locks.pop(k, None)
            return value

    return LazyMemoryStorage()

_PERIODS = {"minute": 60, "day": 86400}


#: the namespace of the request counters (inside the storage's own key prefix)
REQUEST_NAMESPACE = "DG/req"


def request_counter_key(scope: str, subject: str, period: str) -> str:
    """The counter of one subject's requests in one period: the subject and the period only,
    never the limit, so a subject checked against two limits (its budget and its throttled
    budget, or before and after an analyst changes its limits) is counted in one window."""
    return f"{REQUEST_NAMESPACE}/{scope}/{subject}/{period}"


@functools.cache
def _budget_classes() -> dict[str, type[RateLimitItem]]:
    """`limits` items per period whose counter key is `request_counter_key` (the library's own
    `key_for` puts the limit in the key, which would split a subject's window by limit)."""
    from limits import RateLimitItemPerDay, RateLimitItemPerMinute

    # No GRANULARITY of their own: the library registers only classes that set one.
    class RequestsPerMinute(RateLimitItemPerMinute):
        def key_for(self, *identifiers: bytes | str | int | float) -> str:
            scope, subject = identifiers
            return request_counter_key(str(scope), str(subject), self.GRANULARITY.name)

    class RequestsPerDay(RateLimitItemPerDay):
        def key_for(self, *identifiers: bytes | str | int | float) -> str:
            scope, subject = identifiers
            return request_counter_key(str(scope), str(subject), self.GRANULARITY.name)

    return {"minute": RequestsPerMinute, "day": RequestsPerDay}


def request_budget(period: str, limit: int) -> RateLimitItem:
    """A request budget of `limit` per `period` (minute or day), counted by the `limits`
    strategies under `request_counter_key(scope, subject, period)` for identifiers
    `(scope, subject)`."""
    return _budget_classes()[period](limit, namespace=REQUEST_NAMESPACE)


def _budget_name(item: RateLimitItem) -> str:
    return f"requests_per_{item.GRANULARITY.name}"


def _strategy(name: Strategy, storage: Any) -> RateLimiter:
    from limits.aio import strategies

    classes: dict[str, type[RateLimiter]] = {
        "fixed-window": strategies.FixedWindowRateLimiter,
        "moving-window": strategies.MovingWindowRateLimiter,
        "sliding-window": strategies.SlidingWindowCounterRateLimiter,
    }
    return classes[name](storage)


class _VersionedDict(dict[str, LimitSet]):
    """Per-account limits; every change bumps `version`, which drops the limiter's cached plans."""

    version = 0

    def __setitem__(self, key: str, value: LimitSet) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, key: str, *default: Any) -> Any:
        self.version += 1
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        self.version += 1

    def update(self, *args: Any, **kw: Any) -> None:
        super().update(*args, **kw)
        self.version += 1


class Limiter:
    """Checks and charges budgets.

    Args:
        config: default budgets.
        storage_url: `None` or `memory://` for in-process counters; `redis://host:port/db`
            to share counters between replicas.
        key_prefix: namespace of the counters in shared storage.
        redis_options: how the Redis clients connect, time out and retry (`RedisOptions`'
            defaults when None). A counting call that still fails raises; the gateway then
            serves the request unchecked (limits fail open, see docs/gateway.md). With Redis,
            each call (a request's counting and token reservation together, a batch's
            reservation, a batch of settlements) is bounded by `limits_deadline`, retries
            included, and raises `LimitsTimeout` past it.
    """

    def __init__(
        self,
        config: LimitsConfig | None = None,
        storage_url: str | None = None,
        key_prefix: str = "distillguard",
        redis_options: RedisOptions | None = None,
    ) -> None:
        from limits.aio import storage

        self.config = config or LimitsConfig()
        self.account_overrides: dict[str, LimitSet] = _VersionedDict()
        self.storage_url = storage_url or "memory://"
        self._ledger: TokenLedger
        # In memory no call waits on anything: only Redis calls are bounded.
        self._deadline: float | None = None
        if self.storage_url.startswith(("redis://", "rediss://", "redis+unix://")):
            # A retried request count may count a request twice (its reply lost): a budget
            # spent early, never a request left uncounted.
            opts = redis_options or RedisOptions()
            self._storage: Any = storage.RedisStorage(
                self.storage_url, implementation="redispy", key_prefix=key_prefix, **opts.client_kwargs()
            )
            self._ledger = RedisLedger(self.storage_url, f"{key_prefix}:tok", opts)
            self._deadline = opts.limits_deadline
        elif self.storage_url.startswith("memory://"):
            self._storage = _lazy_memory_storage()
            self._ledger = MemoryLedger()
        else:
            raise ConfigError(
                f"Unsupported limits storage {self.storage_url!r}; use memory:// or redis://HOST:PORT/DB."
            )
        self._req = _strategy(self.config.strategy, self._storage)
        self._tok_prefix = f"{key_prefix}:tok"
        # Settlements waiting for `flush_charges` (Redis only): counter key -> tokens to add.
        self._pending: dict[str, int] = {}
        self._windows: dict[tuple[bool, tuple[tuple[Scope, str], ...]], tuple[list[Window], list[tuple[Scope, str, str, int]]]] = {}
        # In-process fixed windows are incremented by a plain call (no coroutine), a tenth of
        # the cost per request; the same counters as the fixed-window strategy's `hit`.
        self._fast = self.config.strategy == "fixed-window" and hasattr(self._storage, "incr_now")
        # per (throttled, scope, subject): its request budgets as (counter key, expiry, budget)
        self._plans: dict[tuple[bool, Scope, str], list[tuple[str, int, RateLimitItem]]] = {}
        self._plans_version = (0, 0)
        self._config_version = 0

    def set_config(self, config: LimitsConfig) -> None:
        if config.strategy != self.config.strategy:
            raise ConfigError("The limits strategy cannot change while the gateway runs; restart it.")
        self.config = config
        self._config_version += 1

    def _drop_stale(self) -> None:
        """Forget cached plans and token windows when limits changed (or too many piled up)."""
        version = (self._config_version, getattr(self.account_overrides, "version", 0))
        if version != self._plans_version or len(self._plans) + len(self._windows) > 100_000:
            self._plans.clear()
            self._windows.clear()
            self._plans_version = version

    def _plan(self, throttled: bool, scope: Scope, subject: str) -> list[tuple[str, int, RateLimitItem]]:
        """(counter key, expiry, budget) per request budget of one subject; the counter
        keys are the same whether `throttled` or not, only the limits differ. Callers drop
        stale plans first (`_drop_stale`, once per call into the limiter)."""
        plan = self._plans.get((throttled, scope, subject))
        if plan is None:
            ls = self._limits_for(scope, subject, throttled)
            plan = []
            for period, req in (("minute", ls.requests_per_minute), ("day", ls.requests_per_day)):
                if req is not None:
                    item = request_budget(period, req)
                    plan.append((item.key_for(scope, subject), item.get_expiry(), item))
            self._plans[(throttled, scope, subject)] = plan
        return plan

    def _limits_for(self, scope: Scope, subject: str, throttled: bool) -> LimitSet:
        ls = self.config.for_scope(scope)
        if scope == "account" and subject in self.account_overrides:
            ls = self.account_overrides[subject]
        return ls.scaled(self.config.throttle_factor) if throttled else ls

    async def _bounded(self, call: Awaitable[_T]) -> _T:
        """Await `call` within the deadline (Redis), or raise `LimitsTimeout`.

        A call cut off may have run on Redis (its reply not yet read): it then counted or
        charged without the caller knowing, which spends a budget early, never gives back.
        """
        if self._deadline is None:
            return await call
        try:
            async with asyncio.timeout(self._deadline):
                return await call
        except TimeoutError as exc:
            raise LimitsTimeout(f"the limits call took more than {self._deadline} s") from exc

    async def check(
        self, subjects: list[tuple[Scope, str]], *, throttled: bool = False, tokens: int = 0
    ) -> LimitResult:
        """Count one request against every subject and reserve `tokens` in their token budgets.

        Refused if any request budget is spent or any token window has reached its limit. An
        allowed result carries the reservation, which the caller must hand to `settle` (or
        `settle_later`) with the tokens the exchange really used, also when it failed (0).

        Args:
            subjects: the (scope, subject) pairs charged, e.g. key, account and campaign.
            throttled: check against the throttled budgets (the limits scaled by
                `throttle_factor`), in the same windows as unthrottled requests.
            tokens: tokens to reserve: the prompt's plus the completion's ceiling (`max_tokens`,
                or `LimitsConfig.reserve_completion_tokens` when the request sets none).

        Raises:
            LimitsTimeout: with Redis, past `RedisOptions.limits_deadline`. No reservation
                comes back then, so nothing is settled against one that may not exist.
        """
        if self._deadline is None:
            return await self._check(subjects, throttled, tokens)
        return await self._bounded(self._check(subjects, throttled, tokens))

    async def _check(self, subjects: list[tuple[Scope, str]], throttled: bool, tokens: int) -> LimitResult:
        self._drop_stale()
        incr = self._storage.incr_now if self._fast else None
        for scope, subject in subjects:
            for key, expiry, item in self._plan(throttled, scope, subject):
                fits = incr(key, expiry) <= item.amount if incr is not None else await self._req.hit(item, scope, subject)
                if not fits:
                    return await self._refusal(item, scope, subject)
        return await self._reserve_tokens(throttled, subjects, tokens)

    async def _reserve_tokens(self, throttled: bool, subjects: list[tuple[Scope, str]], tokens: int) -> LimitResult:
        """Reserve `tokens` in every token window of `subjects` (0: only check none is spent)."""
        windows, names = self._token_windows(throttled, subjects)
        if not windows:
            return ALLOWED
        got = await self._ledger.reserve(windows, max(0, tokens))
        if isinstance(got, Refused):
            scope, subject, budget, limit = names[got.index]
            return LimitResult(False, got.retry_after, scope, subject, budget, limit)
        return LimitResult(True, reservation=got if tokens > 0 else None)

    def _token_windows(
        self, throttled: bool, subjects: list[tuple[Scope, str]]
    ) -> tuple[list[Window], list[tuple[Scope, str, str, int]]]:
        """Token windows of `subjects` with their limits (scaled when `throttled`); a window's
        counter is the same whether throttled or not. Callers drop stale ones first, as for
        `_plan`."""
        cache_key = (throttled, tuple(subjects))
        got = self._windows.get(cache_key)
        if got is None:
            windows: list[Window] = []
            names: list[tuple[Scope, str, str, int]] = []
            for scope, subject in subjects:
                ls = self._limits_for(scope, subject, throttled)
                for period, amount in (("minute", ls.tokens_per_minute), ("day", ls.tokens_per_day)):
                    if amount is not None:
                        windows.append(Window(f"{self._tok_prefix}:{scope}:{subject}:{period}", amount, _PERIODS[period]))
                        names.append((scope, subject, f"tokens_per_{period}", amount))
            got = self._windows[cache_key] = (windows, names)
        return got

    async def reserve(
        self, subjects: list[tuple[Scope, str]], n: int, *, throttled: bool = False,
        periods: tuple[str, ...] = ("minute", "day"),
    ) -> LimitResult:
        """Count `n` requests at once (a submitted batch) against every subject's request budgets
        of the given periods.

        All or nothing: when any budget has fewer than `n` requests left, nothing is counted and
        the refusal's `remaining` says how many were left. A spent token budget refuses too.
        Bounded like `check`.
        """
        return await self._bounded(self._reserve(subjects, n, throttled, periods))

    async def _reserve(
        self, subjects: list[tuple[Scope, str]], n: int, throttled: bool, periods: tuple[str, ...]
    ) -> LimitResult:
        self._drop_stale()
        spent = await self._reserve_tokens(throttled, subjects, 0)  # reserves nothing: only checks
        if not spent.allowed:
            return replace(spent, remaining=0)
        budgets = [(item, scope, subject) for scope, subject in subjects
                   for _key, _expiry, item in self._plan(throttled, scope, subject) if item.GRANULARITY.name in periods]
        # test() counts nothing; hit() counts even what it refuses, so every budget is tested first
        for item, scope, subject in budgets:
            if not await self._req.test(item, scope, subject, cost=n):
                stats = await self._req.get_window_stats(item, scope, subject)
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                return LimitResult(False, retry, scope, subject, _budget_name(item), item.amount,
                                   remaining=max(0, stats.remaining))
        for item, scope, subject in budgets:
            await self._req.hit(item, scope, subject, cost=n)
        return ALLOWED

    async def _refusal(self, item: RateLimitItem, scope: Scope, subject: str) -> LimitResult:
        try:
            stats = await self._req.get_window_stats(item, scope, subject)
            retry = max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:  # noqa: BLE001 - stats are advisory; the refusal stands
            retry = item.get_expiry()
        return LimitResult(False, retry, scope, subject, _budget_name(item), item.amount)

    async def settle(self, reservation: Reservation | None, used: int) -> None:
        """Replace a reservation by the tokens the exchange used (0 if it failed)."""
        if reservation is not None and used != reservation.tokens:
            await self._bounded(self._ledger.settle(dict.fromkeys(reservation.keys, used - reservation.tokens)))

    def settle_later(self, reservation: Reservation | None, used: int) -> None:
        """`settle` without a storage call on the request path: in memory it is applied now,
        with Redis it is queued for `flush_charges` (one script call for the whole batch)."""
        if reservation is None or used == reservation.tokens:
            return
        delta = used - reservation.tokens
        if isinstance(self._ledger, MemoryLedger):
            self._ledger.settle_now(dict.fromkeys(reservation.keys, delta))
            return
        for key in reservation.keys:
            self._pending[key] = self._pending.get(key, 0) + delta

    async def flush_charges(self) -> None:
        """Apply the queued settlements, within the deadline. A batch that fails or times out
        is dropped: its reservations stay charged in full (or applied once, if it reached Redis)."""
        pending, self._pending = self._pending, {}
        if pending:
            await self._bounded(self._ledger.settle(pending))

    async def charge_tokens(self, subjects: list[tuple[Scope, str]], tokens: int) -> None:
        """Charge tokens used without a reservation (counted even past the limit)."""
        if tokens > 0:
            self._drop_stale()
            windows, _ = self._token_windows(False, subjects)
            if windows:
                await self._bounded(self._ledger.reserve(windows, tokens, force=True))

    async def tokens_used(self, scope: Scope, subject: str) -> dict[str, int]:
        """Tokens counted in the current windows of one subject, by budget name."""
        self._drop_stale()
        windows, names = self._token_windows(False, [(scope, subject)])
        return {name[2]: await self._ledger.used(w) for w, name in zip(windows, names, strict=True)}

    async def reset(self) -> None:
        self._pending.clear()
        await self._storage.reset()
        await self._ledger.reset()

    async def aclose(self) -> None:
        """Release the Redis connections (nothing to do in memory)."""
        if isinstance(self._ledger, RedisLedger):
            await self._ledger.aclose()
            await self._storage.bridge.storage.aclose()
