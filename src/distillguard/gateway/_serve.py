"""Run the gateway under uvicorn (one worker; run replicas behind a balancer with --redis)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from distillguard.gateway._config import GatewayConfig


class CoalescingTransport:
    """A transport wrapper whose writes made in one turn of the event loop leave in one send.

    uvicorn writes a response's status line and headers, then its body, each straight to the
    socket: two `send` syscalls for every answer, and on loopback each costs as much as
    the gateway's own auth, limits and policy together (measured with py-spy under
    benchmarks/bench_gateway.py). Here writes are buffered and flushed by a callback at the
    end of the current loop turn, so headers and body (or a stream's opening and first
    event) go out together. Everything but writing is passed to the real transport.
    """

    __slots__ = ("_transport", "_loop", "_buf")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buf: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._buf:
            self._loop.call_soon(self.flush)
        self._buf.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        buf = self._buf
        if not buf:
            return
        self._buf = []
        if not self._transport.is_closing():
            self._transport.write(buf[0] if len(buf) == 1 else b"".join(buf))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(b) for b in self._buf)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._buf = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


log = logging.getLogger("distillguard.gateway")


def _refusal(status: int, reason: str) -> bytes:
    text = reason.encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(text)}\r\nconnection: close\r\n\r\n").encode() + text


def coalescing_protocol(config: GatewayConfig | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools, or h11 without it) over a `CoalescingTransport`,
    with the client limits of `config` (httptools only; h11 has its own header size cap):
    at most `max_connections` open connections (more are closed at once), `header_timeout`
    seconds for a connection to send a request's headers (so idle and slow-header connections
    end), and `max_header_bytes` for the request line and headers (431)."""
    cfg = config or GatewayConfig()
    base: Any
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

        class CoalescingH11(base):  # type: ignore[misc,valid-type]
            def connection_made(self, transport: asyncio.Transport) -> None:
                super().connection_made(CoalescingTransport(transport, self.loop))

        return CoalescingH11

    class CoalescingProtocol(base):  # type: ignore[misc,valid-type]
        _in_head = True
        _head_bytes = 0
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(CoalescingTransport(transport, self.loop))
            if len(self.connections) > cfg.max_connections:
                self._in_head = False
                transport.abort()  # cheaper than any answer; the client sees a reset
                return
            self._start_head()

        def _start_head(self) -> None:
            self._in_head, self._head_bytes = True, 0
            self._head_timer = self.loop.call_later(cfg.header_timeout, self._head_timed_out)

        def _end_head(self) -> None:
            self._in_head = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self, status: int, reason: str) -> None:
            self._end_head()
            if not self.transport.is_closing():
                self.transport.write(_refusal(status, reason))
                self.transport.close()

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._in_head:
                self._refuse(408, "Request Timeout")

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # checked after parsing: a read that finished the headers may carry body bytes too
            if self._in_head and self._head_bytes > cfg.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._in_head:  # the next request on a kept-alive connection
                self._start_head()

        def on_headers_complete(self) -> None:
            self._end_head()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._end_head()
            super().connection_lost(exc)

    return CoalescingProtocol


def uvicorn_config(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **kw: Any) -> Any:
    """The uvicorn settings the gateway runs with (tests use the same)."""
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    kw.setdefault("timeout_graceful_shutdown", 10)
    gw = getattr(app, "gateway", None)
    config = gw.config if gw is not None else None
    if config is not None:
        kw.setdefault("h11_max_incomplete_event_size", config.max_header_bytes)
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, loop=loop,
        http=coalescing_protocol(config), server_header=False, **kw,
    )


def serve(
    config: GatewayConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    fast_path: bool = True,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; shutdown flushes the capture queue before exiting.

    Args:
        on_ready: called once the socket listens, so whoever prints "ready" never says it
            before a client can connect.
    """
    import uvicorn

    from distillguard.gateway._app import create_app

    class ReadyServer(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)  # the app's start-up (lifespan) included
            if self.started and config.freeze_heap:
                from distillguard._heap import freeze_heap

                log.info("gateway: %d start-up objects frozen out of the garbage collector's reach", freeze_heap())
            if self.started and on_ready is not None:  # False when the port could not be bound
                on_ready()

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config, fast_path=fast_path)
    ReadyServer(uvicorn_config(app, host, port, log_level)).run()
