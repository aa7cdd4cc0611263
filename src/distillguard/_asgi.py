"""Raw ASGI body helpers shared by the gateway's and the console's guards: both must bound a
body before anything parses it, and hand the bytes they read on to the app."""

from __future__ import annotations

from typing import Any


async def read_capped(receive: Any, limit: int) -> bytes | None:
    """The whole body, or None once more than `limit` bytes have arrived (a chunked body
    has no Content-Length to check first)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return b"".join(chunks)
        body = msg.get("body", b"")
        size += len(body)
        if size > limit:
            return None
        chunks.append(body)
        if not msg.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Any) -> Any:
    """A `receive` that gives `body` once, then defers to the real one (disconnects)."""
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
