"""Checks that run before a request reaches routing or its body is read: the admin token and
a body size cap for the admin API, and a per-address limit on failed logins.

FastAPI reads and parses a body before it runs a route's dependencies, so a token check
written as a dependency lets anyone without the token make the gateway read a body of any
size. These run on the raw ASGI scope instead."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from typing import Any

import orjson

from distillguard._asgi import read_capped, replay

#: largest body the admin API reads (its requests are small JSON objects)
ADMIN_MAX_BODY_BYTES = 64 * 1024


def bearer_token(scope: Any) -> str | None:
    """The bearer token of the request's Authorization header, if any."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            return given.strip() if scheme.lower() == "bearer" else None
    return None


def token_matches(given: str | None, token: str) -> bool:
    return hmac.compare_digest((given or "").encode("utf-8", "surrogatepass"), token.encode())


async def send_json(send: Any, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def declared_length(scope: Any) -> int | None:
    """The Content-Length header as a number (None if absent; -1 if not a number)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


class AdminGuard:
    """Wraps the admin API: token first, then the declared and the actual body size."""

    def __init__(self, app: Any, token: str | None, max_body: int = ADMIN_MAX_BODY_BYTES) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.token is None:
            await send_json(send, 403, {"detail": "The admin API is disabled; start the gateway with --admin-token (or DISTILLGUARD_ADMIN_TOKEN)."})
            return
        if not token_matches(bearer_token(scope), self.token):
            await send_json(send, 401, {"detail": "Missing or wrong admin token; send 'Authorization: Bearer ADMIN_TOKEN'."},
                            [(b"www-authenticate", b"Bearer")])
            return
        n = declared_length(scope)
        if n is not None and (n < 0 or n > self.max_body):
            await send_json(send, 413, {"detail": f"The admin API takes bodies of at most {self.max_body} bytes."})
            return
        body = await read_capped(receive, self.max_body)
        if body is None:
            await send_json(send, 413, {"detail": f"The admin API takes bodies of at most {self.max_body} bytes."})
            return
        await self.app(scope, replay(body, receive), send)


class FailureLimiter:
    """Failed logins per client address in a fixed window; a bounded table (oldest out).

    Args:
        max_failures: failures an address may have in one window before it is refused.
        window_s: window length in seconds.
        max_addresses: most addresses remembered (a flood of addresses evicts the oldest).
    """

    def __init__(self, max_failures: int = 50, window_s: float = 60.0, max_addresses: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._table: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _entry(self, addr: str, now: float) -> tuple[float, int]:
        start, n = self._table.get(addr, (now, 0))
        return (now, 0) if now - start >= self.window_s else (start, n)

    def blocked(self, addr: str) -> float | None:
        """Seconds until `addr` may try again, or None if it may now."""
        now = time.monotonic()
        start, n = self._entry(addr, now)
        return None if n < self.max_failures else max(0.0, self.window_s - (now - start))

    def failed(self, addr: str) -> None:
        now = time.monotonic()
        start, n = self._entry(addr, now)
        self._table[addr] = (start, n + 1)
        self._table.move_to_end(addr)
        while len(self._table) > self.max_addresses:
            self._table.popitem(last=False)
