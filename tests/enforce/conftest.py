"""Limits run on both storages: in memory, and on the real Redis under a fresh key prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> Iterator[str]:
    """`memory://`, or the real Redis (its test keys, `dgtest-budget-*`, deleted afterwards)."""
    if request.param == "memory":
        yield "memory://"
        return
    url: str = request.getfixturevalue("redis_url")
    yield url
    import redis

    r = redis.Redis.from_url(url)
    for key in r.scan_iter("dgtest-budget-*"):
        r.delete(key)
