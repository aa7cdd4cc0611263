"""The Redis clients' options, and settlements that a retry cannot apply twice.

Idle connections ended by a middlebox, end to end: tests/gateway/test_redis_idle.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from distillguard._errors import ConfigError
from distillguard._redis import RedisOptions
from distillguard.enforce._tokens import RedisLedger, Reservation, Window

from .support import fresh_prefix


def test_options_are_validated() -> None:
    RedisOptions(health_check_interval=0, retries=0)  # checks and retries may be turned off
    RedisOptions(socket_timeout=0.1, socket_connect_timeout=0.1, limits_deadline=0.25)
    # the deadline leaves no room for a retry after a read timeout on a new connection
    too_short = {"socket_timeout": 0.2, "socket_connect_timeout": 0.2, "limits_deadline": 0.4}
    for bad in ({"socket_timeout": 0}, {"retries": -1}, {"keepalive_idle": 0}, {"health_check_interval": -1},
                {"limits_deadline": 0}, too_short):
        with pytest.raises(ConfigError):
            RedisOptions(**bad)  # type: ignore[arg-type]


def test_clients_get_the_retries_and_health_checks(redis_url: str) -> None:
    import redis.asyncio as aioredis

    opts = RedisOptions(health_check_interval=3, retries=4)
    conn = aioredis.from_url(redis_url, **opts.client_kwargs()).connection_pool.make_connection()
    # (`_retries`: redis-py 5 has no public getter)
    assert (conn.retry._retries, conn.health_check_interval, conn.socket_keepalive) == (4, 3, True)
    # without the options, redis-py's from_url neither retries nor checks
    bare = aioredis.from_url(redis_url).connection_pool.make_connection()
    assert (bare.retry._retries, bare.health_check_interval) == (0, 0)


@pytest.fixture
def ledger(redis_url: str) -> Iterator[RedisLedger]:
    prefix = fresh_prefix()
    yield RedisLedger(redis_url, prefix)
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(f"{prefix}*"):
        r.delete(key)
    r.close()


def test_a_settlement_sent_twice_is_applied_once(ledger: RedisLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry after a lost reply sends the same settlement (same id) again: it must not give
    tokens back twice. Two settlements with their own ids both apply."""
    window = Window(f"{ledger.prefix}:account:a:day", 10_000, 86400)

    async def go() -> list[int]:
        got = await ledger.reserve([window], 300)
        assert isinstance(got, Reservation)
        seen = [await ledger.used(window)]
        fixed = uuid.uuid4()
        with monkeypatch.context() as m:
            m.setattr(uuid, "uuid4", lambda: fixed)
            await ledger.settle(dict.fromkeys(got.keys, -100))
            await ledger.settle(dict.fromkeys(got.keys, -100))  # the retry: same id
        seen.append(await ledger.used(window))
        await ledger.settle(dict.fromkeys(got.keys, -100))  # a new settlement: a new id
        seen.append(await ledger.used(window))
        await ledger.aclose()
        return seen

    assert asyncio.run(go()) == [300, 200, 100]
