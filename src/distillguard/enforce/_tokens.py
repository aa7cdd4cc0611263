"""Token budgets that hold under concurrency: reserve before forwarding, settle after.

A request reserves `prompt_tokens + max_tokens` (see `Limiter.check`) against every token
window of every subject, in one atomic step: the reservation is admitted only if each window
has not yet reached its limit, and then added to all of them. The exchange settles later with
the upstream's usage (usually giving tokens back). So at any moment a window holds what
finished exchanges used plus what running ones reserved, and a burst of concurrent requests
can overshoot a budget by at most the reservation of the one admitted last.

Windows are fixed and aligned to the clock (`floor(now / period)`); the window's number is
part of the counter's key, so a settlement lands in the window that was charged, never in the
next one. With Redis the clock is Redis's own (`TIME`), so replicas with skewed clocks still
agree on the window.

With Redis, a call that fails on a connection error or a timeout is retried on a new
connection (`RedisOptions`). A reservation whose reply was lost may so be charged twice: the
window fills early, which refuses sooner and never serves tokens uncharged. A settlement
usually gives tokens back, so applying one twice would leave tokens uncharged: each settlement
carries a fresh id, and the script applies an id once (a marker key that outlives any retry).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from distillguard._redis import RedisOptions

# Counters live a little longer than their window so a late settlement still finds them.
_GRACE_S = 60
#: seconds a settlement's id is remembered, far longer than its retries can take
SETTLED_MARK_S = 300


@dataclass(frozen=True)
class Reservation:
    """Tokens held in some windows until the exchange settles (`Limiter.settle`)."""

    keys: tuple[str, ...]
    tokens: int


@dataclass(frozen=True)
class Window:
    """One token budget of one subject: counter base key, limit and period in seconds."""

    base: str
    limit: int
    period: int


@dataclass(frozen=True)
class Refused:
    """The window (index into the request's windows) that was full, and seconds to its end."""

    index: int
    retry_after: int


class TokenLedger(Protocol):
    async def reserve(self, windows: list[Window], tokens: int, force: bool = False) -> Reservation | Refused: ...

    async def settle(self, deltas: dict[str, int]) -> None: ...

    async def used(self, window: Window) -> int: ...

    async def reset(self) -> None: ...


class MemoryLedger:
    """One process's token windows. Every call runs to completion without yielding to the
    event loop, which is what makes check-then-add atomic here."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._expiry: dict[str, float] = {}
        # per window base: (when its current window ends, that window's counter key, the
        # counter's expiry), so a request in the same window formats no key
        self._current: dict[str, tuple[float, str, float]] = {}
        self._swept = time.time()

    def _sweep(self, now: float) -> None:
        # Expired windows are dropped at most every 10 s (not on every call).
        if now - self._swept > 10.0:
            self._swept = now
            for k in [k for k, t in self._expiry.items() if t <= now]:
                self._counts.pop(k, None)
                self._expiry.pop(k, None)
            for k in [k for k, (end, _key, _exp) in self._current.items() if end <= now]:
                del self._current[k]

    def _window(self, w: Window, now: float) -> tuple[float, str, float]:
        """(end, counter key, expiry) of `w`'s window holding `now`."""
        got = self._current.get(w.base)
        if got is None or got[0] <= now:
            n = math.floor(now / w.period)
            end = (n + 1) * w.period
            got = self._current[w.base] = (end, f"{w.base}:{n}", end + _GRACE_S)
        return got

    def reserve_now(self, windows: list[Window], tokens: int, force: bool = False) -> Reservation | Refused:
        now = time.time()
        self._sweep(now)
        counts = self._counts
        found = [self._window(w, now) for w in windows]
        if not force:
            for i, (w, (end, key, _exp)) in enumerate(zip(windows, found, strict=True)):
                if counts.get(key, 0) >= w.limit:
                    return Refused(i, max(1, math.ceil(end - now)))
        if tokens:
            for _end, key, exp in found:
                if key in counts:
                    counts[key] += tokens
                else:
                    counts[key] = tokens
                    self._expiry.setdefault(key, exp)
        return Reservation(tuple(key for _end, key, _exp in found), tokens)

    async def reserve(self, windows: list[Window], tokens: int, force: bool = False) -> Reservation | Refused:
        return self.reserve_now(windows, tokens, force)

    def settle_now(self, deltas: dict[str, int]) -> None:
        for key, delta in deltas.items():
            if key in self._counts:  # an expired window is gone; nothing to give back
                self._counts[key] += delta

    async def settle(self, deltas: dict[str, int]) -> None:
        self.settle_now(deltas)

    async def used(self, window: Window) -> int:
        return self._counts.get(f"{window.base}:{math.floor(time.time() / window.period)}", 0)

    async def reset(self) -> None:
        self._counts.clear()
        self._expiry.clear()


# KEYS: the windows' base keys. ARGV: tokens, force (0/1), then limit and period per window.
# Returns {0, n_1, ..., n_k} (the window numbers charged) or {i, seconds_left} when window i
# is full. The counters' full keys are derived inside the script from Redis's clock, so this
# runs on one Redis (a cluster would need the bases in one hash slot).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = tonumber(ARGV[1])
local force = ARGV[2] == '1'
local nums = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + 2 * i])
  local period = tonumber(ARGV[2 + 2 * i])
  local n = math.floor(now / period)
  nums[i] = n
  if not force then
    local used = tonumber(redis.call('GET', KEYS[i] .. ':' .. n) or '0')
    if used >= limit then
      return {i, math.max(1, math.ceil((n + 1) * period - now))}
    end
  end
end
if tokens ~= 0 then
  for i = 1, #KEYS do
    local key = KEYS[i] .. ':' .. nums[i]
    local period = tonumber(ARGV[2 + 2 * i])
    if redis.call('INCRBY', key, tokens) == tokens then
      redis.call('EXPIREAT', key, (nums[i] + 1) * period + tonumber(ARGV[#ARGV]))
    end
  end
end
local out = {0}
for i = 1, #KEYS do out[i + 1] = nums[i] end
return out
"""

# KEYS: the settlement's id marker, then the counters; ARGV: the marker's lifetime, then one
# delta per counter. A settlement whose marker exists was applied (this call is a retry after
# a lost reply) and is skipped. A counter that expired is left alone (a negative delta must
# not create a new counter below zero).
_SETTLE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], tonumber(ARGV[i]))
  end
end
return #KEYS - 1
"""


class RedisLedger:
    """Token windows in Redis, shared by every replica; each step is one Lua script."""

    def __init__(self, url: str, prefix: str, options: RedisOptions | None = None) -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self._client: Any = aioredis.from_url(url, **(options or RedisOptions()).client_kwargs())
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)

    async def reserve(self, windows: list[Window], tokens: int, force: bool = False) -> Reservation | Refused:
        args: list[int] = [tokens, 1 if force else 0]
        for w in windows:
            args += [w.limit, w.period]
        args.append(_GRACE_S)
        out = await self._reserve(keys=[w.base for w in windows], args=args)
        if int(out[0]) != 0:
            return Refused(int(out[0]) - 1, int(out[1]))
        return Reservation(tuple(f"{w.base}:{int(n)}" for w, n in zip(windows, out[1:], strict=True)), tokens)

    async def settle(self, deltas: dict[str, int]) -> None:
        if deltas:
            mark = f"{self.prefix}:settled:{uuid.uuid4().hex}"
            await self._settle(keys=[mark, *deltas], args=[SETTLED_MARK_S, *deltas.values()])

    async def used(self, window: Window) -> int:
        secs, micros = await self._client.time()
        n = math.floor((secs + micros / 1e6) / window.period)
        v = await self._client.get(f"{window.base}:{n}")
        return int(v or 0)

    async def reset(self) -> None:
        keys = [k async for k in self._client.scan_iter(match=f"{self.prefix}:*")]
        if keys:
            await self._client.delete(*keys)

    async def aclose(self) -> None:
        await self._client.aclose()
