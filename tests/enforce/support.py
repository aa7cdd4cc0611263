"""Test support for limits."""

from __future__ import annotations

import uuid

from distillguard._redis import RedisOptions

#: Redis options for the concurrent-burst tests. Those check that budgets are exact when Redis
#: answers; on a shared CI machine a burst of hundreds of calls on one event loop can wait longer
#: than the production timeouts for the loop itself, and would then retry a call that ran (charging it
#: twice) or fail open. The deadline's
#: own behaviour is tested in tests/gateway/test_redis_idle.py.
BURST_OPTIONS = RedisOptions(socket_timeout=5.0, socket_connect_timeout=5.0, limits_deadline=30.0)


def fresh_prefix() -> str:
    """A fresh Redis namespace for one limiter (unused in memory); the `storage` fixture
    deletes its keys afterwards."""
    return f"dgtest-budget-{uuid.uuid4().hex[:8]}"
