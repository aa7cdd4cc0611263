"""How every Redis client of the gateway and the detector connects: one set of options.

A Redis server (`timeout`), a load balancer or a NAT between a replica and Redis may end a
connection that sat idle: with a FIN, with a RST on the next packet (AWS NLB, most NATs), or by
silently dropping its packets (Azure's load balancer by default, an expired conntrack entry).
redis-py's `from_url` clients neither retry nor time out by default, so the first command on
such a connection would fail (and the limits it serves fail open) or hang. These options:

- `health_check_interval`: a connection idle longer than this is checked with a PING before
  its next command, so a command is rarely sent into a dead connection; a pub/sub subscriber
  pings at least this often, which also keeps a middlebox from seeing it idle;
- `socket_keepalive` with the keepalive timers: the kernel probes an idle connection, which
  keeps a middlebox's state for it alive and finds a dead peer;
- `socket_timeout` / `socket_connect_timeout`: a silently dropped connection fails instead of
  hanging the request;
- `retries` with jittered exponential backoff: a command that failed with a connection error
  or a timeout is sent again on a new connection;
- `limits_deadline`: the most one limits call (a request's counting and token reservation
  together, or one batch of settlements) may take, retries included. redis-py retries a
  reconnect inside each command retry, so a Redis that accepts connections and never answers
  would otherwise hold a request about ten seconds before its limits fail open.

A retried command may have run once already when the connection died after sending it (its
reply lost). Callers decide per command whether that is acceptable; see `enforce/_tokens.py`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, fields
from typing import Any

from distillguard._errors import ConfigError


@dataclass(frozen=True)
class RedisOptions:
    """Connection options of every Redis client (limits, token ledger, verdict channel).

    Args:
        health_check_interval: seconds a connection may sit idle before its next command is
            preceded by a PING (and between a subscriber's PINGs); keep it below the shortest
            idle timeout on the path to Redis. 0 turns health checks off.
        socket_timeout: seconds to wait for a reply before the command fails (and is retried).
        socket_connect_timeout: seconds to wait for a connection.
        socket_keepalive: TCP keepalive on every connection.
        keepalive_idle: seconds idle before the first keepalive probe (Linux `TCP_KEEPIDLE`).
        keepalive_interval: seconds between probes (`TCP_KEEPINTVL`).
        keepalive_count: unanswered probes before the connection is dropped (`TCP_KEEPCNT`).
        retries: times a command that failed with a connection error or timeout is retried.
        backoff_base: the backoff unit: retry n waits between half of and the whole of
            `backoff_base * 2**n` (redis-py's equal-jitter backoff), at most `backoff_cap`.
        backoff_cap: most seconds between retries.
        limits_deadline: most seconds one limits call may take, retries included; past it the
            call fails (and the gateway serves the request unchecked, docs/gateway.md). It must
            exceed `socket_timeout + socket_connect_timeout`, so that a command sent into a dead
            connection can still be retried on a new one within it.
    """

    health_check_interval: float = 10.0
    socket_timeout: float = 0.2
    socket_connect_timeout: float = 0.2
    socket_keepalive: bool = True
    keepalive_idle: int = 30
    keepalive_interval: int = 10
    keepalive_count: int = 3
    retries: int = 2
    backoff_base: float = 0.05
    backoff_cap: float = 1.0
    limits_deadline: float = 0.5

    def __post_init__(self) -> None:
        problems = []
        for name in ("health_check_interval", "backoff_base", "backoff_cap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                problems.append(f"{name} must be a non-negative number of seconds, got {v!r}")
        for name in ("socket_timeout", "socket_connect_timeout", "limits_deadline"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                problems.append(f"{name} must be a positive number of seconds, got {v!r}")
        for name in ("keepalive_idle", "keepalive_interval", "keepalive_count"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name} must be a positive integer, got {v!r}")
        if not problems and self.limits_deadline <= self.socket_timeout + self.socket_connect_timeout:
            problems.append(
                f"limits_deadline ({self.limits_deadline} s) must exceed socket_timeout plus socket_connect_timeout "
                f"({self.socket_timeout + self.socket_connect_timeout} s): a command on a dead connection must have "
                "time for one retry on a new connection"
            )
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            problems.append(f"retries must be a non-negative integer, got {self.retries!r}")
        if problems:
            raise ConfigError("Invalid Redis options: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def keepalive_options(self) -> dict[int, int]:
        """The keepalive timers this platform lets a socket set (Linux has all three)."""
        names = (("TCP_KEEPIDLE", self.keepalive_idle), ("TCP_KEEPINTVL", self.keepalive_interval),
                 ("TCP_KEEPCNT", self.keepalive_count))
        return {getattr(socket, n): v for n, v in names if hasattr(socket, n)}

    def client_kwargs(self, asyncio: bool = True) -> dict[str, Any]:
        """Keyword arguments for `redis.Redis.from_url` (or `redis.asyncio`'s when `asyncio`)."""
        from redis.backoff import EqualJitterBackoff

        if asyncio:
            from redis.asyncio.retry import Retry as AsyncRetry

            retry: Any = AsyncRetry(EqualJitterBackoff(self.backoff_cap, self.backoff_base), self.retries)
        else:
            from redis.retry import Retry

            retry = Retry(EqualJitterBackoff(self.backoff_cap, self.backoff_base), self.retries)
        kw: dict[str, Any] = {
            "health_check_interval": self.health_check_interval,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "socket_keepalive": self.socket_keepalive,
            "retry": retry,
        }
        if self.socket_keepalive:
            kw["socket_keepalive_options"] = self.keepalive_options()
        return kw
