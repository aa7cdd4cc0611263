"""A lean HTTP/1.1 client for upstream model servers: keep-alive connections pooled per
upstream, each an asyncio protocol whose answers httptools (llhttp) parses.

Why not aiohttp's ClientSession: the gateway sends one kind of request (a POST of JSON bytes
to a fixed host) and reads the status and the body, nothing else: no cookies, redirects,
proxies, compression or header objects. aiohttp's client does all of that for every request,
and under benchmarks/bench_gateway.py it cost more CPU than auth, limits, policy and capture
together. Here a request is one `write` of prepared bytes, and an answer is parsed by llhttp
with one small Python callback per header, looking for the three names that matter.

What the pool guarantees:

- at most `connections` requests in flight; more wait their turn;
- an idle connection is reused last-in first-out, and dropped once idle for
  `keepalive_expiry` seconds (below the 5 s servers such as uvicorn allow), or when the server
  closed it;
- a reused connection that dies before any byte of the answer arrives (the server closed it as
  the request left) is retried once on a new connection; nothing else is retried;
- `read_timeout` bounds the wait for each piece of the answer (headers, body, stream data),
  `connect_timeout` the connection set-up; both raise `TimeoutError`;
- a connection goes back to the pool only after a complete answer that allows keep-alive; one
  whose reader left before the answer's last bytes (a stream's chunked terminator, sent after
  its last event) reads them on its own first, for up to `LINGER` seconds; anything else
  (cancelled, timed out, broken, an answer still running) closes it.

Errors: `TimeoutError`, `OSError` (refused, reset, closed mid-answer: `UpstreamDisconnected`),
and `BadResponse` for an answer that is not HTTP/1.x or is compressed.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

#: some fronts (CDNs, WAFs) refuse requests without a User-Agent
USER_AGENT = "distillguard-gateway"
#: buffered answer bytes above which the connection stops reading (a slow client downstream)
HIGH_WATER = 256 * 1024
#: seconds a released connection may take to receive the rest of an answer nobody reads
LINGER = 1.0


class UpstreamDisconnected(ConnectionResetError):
    """The upstream closed the connection before its answer was complete."""


class PoolBusy(TimeoutError):
    """No connection of the pool became free within its `acquire_timeout`."""


class BadResponse(Exception):
    """The upstream's answer is not well-formed HTTP/1.x (or uses an unsupported encoding)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; its current answer's state lives on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self.waiter: asyncio.Future[None] | None = None
        self.lingering: HttpPool | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._begin()

    def _begin(self) -> None:
        self.status = 0
        self.headers_done = False
        self.done = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.exc: BaseException | None = None
        self.got_bytes = False
        self.delimited = False  # Content-Length or Transfer-Encoding, not the connection's end
        self.encoding: bytes | None = None
        self.informational = False
        self.paused = False
        self.keep_alive = False

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.exc = BadResponse(f"malformed HTTP answer ({exc})")
            self.close()
        if self.lingering is not None:
            if self.done and not self.closed and self.exc is None:
                pool, self.lingering = self.lingering, None
                pool._keep(self)
            return
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lingering = None
        if not self.done and self.exc is None:
            if self.headers_done and not self.delimited and not self.informational:
                self.done = True  # a body delimited by the connection's end
            else:
                self.exc = UpstreamDisconnected("the upstream closed the connection before its answer was complete")
        self._wake()

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        if self.done:  # a second answer to one request: the connection cannot be trusted
            self.exc = BadResponse("the upstream sent more than one answer to one request")
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"content-length" or n == b"transfer-encoding":
            self.delimited = True
        elif n == b"content-encoding":
            v = value.strip().lower()
            if v and v != b"identity":
                self.encoding = v

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): skip it
            self.informational = True
            self.delimited = False
            return
        self.status = status
        self.headers_done = True
        # read here: llhttp resets it once the message is complete
        self.keep_alive = self.parser.should_keep_alive()
        if self.encoding is not None:
            self.exc = BadResponse(f"the answer is {self.encoding.decode('latin-1')}-encoded although identity was asked for")

    def on_body(self, body: bytes) -> None:
        if self.lingering is not None:  # the rest of an answer nobody reads any more
            self.buffered += len(body)
            if self.buffered > HIGH_WATER:
                self.close()
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.done = True

    # ---------------------------------------------------------------- use

    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until something new arrives (or the connection ends); TimeoutError after `timeout`."""
        loop = self.loop
        fut = loop.create_future()
        self.waiter = fut
        # One timer per connection, moved lazily: a wait only sets its deadline, and the timer
        # (armed when none is) fires at the earliest deadline it knew and re-arms for a later
        # one. A timer per wait, made and cancelled, cost more than the rest of waiting.
        self.deadline = loop.time() + timeout
        if self._timer is None:
            self._timer = loop.call_at(self.deadline, self._check_deadline)
        try:
            await fut
        finally:
            self.waiter = None

    def _check_deadline(self) -> None:
        self._timer = None
        fut = self.waiter
        if fut is None or fut.done() or self.closed:
            return  # nothing waits: the next wait arms a new timer
        if self.loop.time() >= self.deadline - 0.001:
            self.waiter = None
            fut.set_exception(TimeoutError())
        else:
            self._timer = self.loop.call_at(self.deadline, self._check_deadline)

    def take(self) -> bytes:
        """The body bytes received so far (and resumes reading if it had paused)."""
        chunks = self.chunks
        out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return out

    def linger(self, pool: HttpPool, seconds: float) -> None:
        """Read the rest of an answer its reader left (a stream's closing bytes, sent after its
        last event) and then return to `pool`'s idle connections; closed instead if the rest
        takes longer than `seconds` or is larger than HIGH_WATER."""
        self.lingering = pool
        self.chunks = []
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self._linger_timer = self.loop.call_later(seconds, self.close)

    def close(self) -> None:
        self.closed = True
        self.lingering = None
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()


class Response:
    """An upstream's answer: `status`, then the body by `read()` or `stream()`; `release()`
    must follow (it returns the connection to the pool, or closes it)."""

    __slots__ = ("status", "_conn", "_pool", "_released")

    def __init__(self, status: int, conn: _Connection, pool: HttpPool) -> None:
        self.status = status
        self._conn = conn
        self._pool = pool
        self._released = False

    async def read(self) -> bytes:
        """The whole body."""
        conn, timeout = self._conn, self._pool.read_timeout
        parts: list[bytes] = []
        while True:
            if conn.chunks:
                parts.append(conn.take())
            if conn.exc is not None:
                raise conn.exc
            if conn.done:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await conn.wait(timeout)

    async def next_chunk(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some); b"" at the end."""
        conn = self._conn
        while True:
            if conn.chunks:
                return conn.take()
            if conn.exc is not None:
                raise conn.exc
            if conn.done:
                return b""
            await conn.wait(self._pool.read_timeout)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives: whatever each network read brought."""
        while chunk := await self.next_chunk():
            yield chunk

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self._conn)


class HttpPool:
    """POSTs to one upstream (scheme, host and port of `base_url`) over pooled connections.

    Args:
        base_url: `http://` or `https://` URL; its path prefixes every request's path.
        connections: most requests in flight at once.
        connect_timeout: seconds to set up a connection.
        read_timeout: seconds to wait for each piece of an answer.
        keepalive_expiry: seconds an idle connection stays in the pool.
        acquire_timeout: seconds a request waits for a free connection before PoolBusy.
        ssl_context: for https, instead of the system's default verification.
    """

    def __init__(self, base_url: str, connections: int = 256, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0, keepalive_expiry: float = 4.0,
                 ssl_context: _ssl.SSLContext | None = None, acquire_timeout: float = 10.0) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"upstream URL {base_url!r} is not an http:// or https:// URL")
        self.host = u.hostname
        self.tls = u.scheme == "https"
        self.port = u.port or (443 if self.tls else 80)
        self.prefix = u.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.connections = connections
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_expiry = keepalive_expiry
        self.acquire_timeout = acquire_timeout
        self._ssl = ssl_context
        self._idle: list[_Connection] = []
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._heads: dict[tuple[str, bytes], bytes] = {}
        self._closed = False
        self._bound: asyncio.AbstractEventLoop | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _head(self, path: str, headers: bytes) -> bytes:
        """The request line and fixed headers for `path` (cached), up to Content-Length."""
        key = (path, headers)
        head = self._heads.get(key)
        if head is None:
            head = (f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                    f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nAccept-Encoding: identity\r\n").encode("latin-1") + headers + b"Content-Length: "
            if len(self._heads) < 64:
                self._heads[key] = head
        return head

    async def post(self, path: str, body: bytes, headers: bytes = b"") -> Response:
        """Send `body` to `path` (after the base URL's path) and wait for the answer's headers.

        `headers` are ready-made header lines (`b"Name: value\\r\\n"` each).
        """
        if self._closed:
            raise RuntimeError("the upstream connection pool is closed")
        data = b"%s%d\r\n\r\n%s" % (self._head(path, headers), len(body), body)
        await self._acquire()
        try:
            for attempt in (0, 1):
                conn = await self._connection(fresh=attempt > 0)
                conn.transport.write(data)  # type: ignore[union-attr]
                try:
                    while not conn.headers_done:
                        if conn.exc is not None:
                            raise conn.exc
                        await conn.wait(self.read_timeout)
                except TimeoutError:  # an OSError too, but never retried: the upstream may be working on it
                    conn.close()
                    raise
                except OSError:
                    conn.close()
                    if attempt == 0 and conn.reused and not conn.got_bytes:
                        continue  # the server closed a kept-alive connection as the request left
                    raise
                except BaseException:
                    conn.close()
                    raise
                if conn.exc is not None:
                    conn.close()
                    raise conn.exc
                return Response(conn.status, conn, self)
            raise AssertionError("unreachable")
        except BaseException:
            self._done()
            raise

    async def _acquire(self) -> None:
        deadline: float | None = None
        while self._busy >= self.connections:
            loop = self._loop()
            deadline = deadline or loop.time() + self.acquire_timeout
            fut = loop.create_future()
            self._waiters.append(fut)
            try:
                try:
                    await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
                except TimeoutError as exc:
                    raise PoolBusy(f"no free connection to {self.host_header} within {self.acquire_timeout:g} s") from exc
            except BaseException:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._wake_next()  # pass the turn on
                raise
        self._busy += 1

    def _wake_next(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _done(self) -> None:
        self._busy -= 1
        if self._waiters:
            self._wake_next()

    def _loop(self) -> asyncio.AbstractEventLoop:
        # The pool's connections belong to the loop that made them. Kept, because
        # asyncio.get_running_loop() makes a getpid() system call every time.
        loop = self._bound
        if loop is None or loop.is_closed():
            loop = self._bound = asyncio.get_running_loop()
            self._idle = []  # another loop's connections
        return loop

    async def _connection(self, fresh: bool = False) -> _Connection:
        loop = self._loop()
        idle = self._idle
        now = loop.time()
        while idle and not fresh:
            conn = idle.pop()
            if conn.closed or conn.got_bytes or now - conn.idle_since > self.keepalive_expiry:
                conn.close()
                continue
            conn.reused = True
            return conn
        if self.tls and self._ssl is None:
            self._ssl = _ssl.create_default_context()
        conn = _Connection(loop)
        await asyncio.wait_for(
            loop.create_connection(lambda: conn, self.host, self.port, ssl=self._ssl,
                                   server_hostname=self.host if self.tls else None),
            self.connect_timeout,
        )
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed or conn.exc is not None or not conn.keep_alive or self._closed:
            conn.close()
        elif conn.done:
            self._keep(conn)
        elif conn.headers_done:
            # The reader stopped before the end: a stream's last bytes (the chunked terminator)
            # often arrive just after its last event. Let the connection read them on its own.
            conn.linger(self, LINGER)
        else:
            conn.close()
        self._done()

    def _keep(self, conn: _Connection) -> None:
        """Back among the idle connections, its answer complete."""
        if conn._linger_timer is not None:
            conn._linger_timer.cancel()
            conn._linger_timer = None
        if self._closed:
            conn.close()
            return
        conn._begin()
        conn.idle_since = conn.loop.time()
        self._idle.append(conn)

    async def aclose(self) -> None:
        """Close the idle connections; connections in use close when released."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def header_lines(headers: dict[str, str]) -> bytes:
    """`{"name": "value"}` as ready-made header lines for `HttpPool.post`."""
    for k, v in headers.items():
        if any(c in k + v for c in "\r\n") or not k:
            raise ValueError(f"header {k!r} has an empty name or a line break")
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")

