"""A lean server-sent-events response for the proxy routes' streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response


class SSEResponse(Response):
    """A text/event-stream response that cancels its body when the client goes away.

    Leaner than Starlette's StreamingResponse on this ASGI version (one watcher task instead of
    a task group with two, and none for a stream sent in full within one loop turn), which
    matters because every streamed request pays for it.
    """

    sse_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]

    def __init__(self, body: AsyncIterator[bytes]) -> None:  # noqa: D107 - Response's own init is not needed
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = self.sse_headers
        self.stream = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        state = {"done": False, "gone": False}
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    if not state["done"] and task is not None:
                        state["gone"] = True
                        task.cancel()
                    return

        def start_watching() -> None:
            nonlocal watcher
            watcher = loop.create_task(watch())

        # The watcher starts on the loop's next turn: a stream whose upstream answer is already
        # in (a short answer arrives in one read) is sent in full before then and needs none;
        # a client that left in the meantime is seen by the watcher at once.
        handle = loop.call_soon(start_watching)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.sse_headers})
            async for chunk in self.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            state["done"] = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            if task is not None:
                task.uncancel()
        except OSError:  # the socket went away under a write
            await aclose_quietly(self.stream)
        finally:
            state["done"] = True
            handle.cancel()
            if watcher is not None:
                watcher.cancel()


async def aclose_quietly(agen: Any) -> None:
    with contextlib.suppress(BaseException):  # closing the upstream stream is best effort
        await agen.aclose()
