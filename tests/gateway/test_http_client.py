"""The upstream HTTP client (`_http.py`) against a scripted server on a real socket: keep-alive
reuse, body framings, connections the server closes, timeouts, errors, backpressure."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from distillguard._errors import ConfigError
from distillguard.gateway import AnthropicUpstream, ApiError, OpenAIUpstream, _http
from distillguard.gateway._http import (
    HIGH_WATER,
    BadResponse,
    HttpPool,
    UpstreamDisconnected,
    header_lines,
)

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]
"""Answers one request (its raw bytes given); returns whether to keep the connection open."""

HEADERS = header_lines({"content-type": "application/json", "authorization": "Bearer sk-test"})


class Server:
    """Serves each request with the next `Reply` in `script` (the last one repeats)."""

    def __init__(self, *script: Reply, tls: ssl.SSLContext | None = None) -> None:
        self.script = list(script)
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for t in self.handlers:
            t.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme, host = ("https", "localhost") if self.tls else ("http", "127.0.0.1")
        return f"{scheme}://{host}:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # the test is over
        finally:
            self.handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
                raw = head + await reader.readexactly(length)
                self.requests.append(raw)
                reply = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
                if not await reply(reader, writer, raw):
                    return
        finally:
            self.open_now -= 1
            writer.close()


def answer(body: bytes = b'{"ok": true}', status: str = "200 OK", extra: bytes = b"") -> Reply:
    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _raw: bytes) -> bool:
        w.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (status.encode(), len(body), extra, body))
        await w.drain()
        return b"connection: close" not in extra.lower()

    return reply


def chunked(*pieces: bytes, pause: float = 0.0, end: bool = True) -> Reply:
    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _raw: bytes) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for p in pieces:
            w.write(b"%x\r\n%s\r\n" % (len(p), p))
            await w.drain()
            await asyncio.sleep(pause)
        if end:
            w.write(b"0\r\n\r\n")
            await w.drain()
        return end

    return reply


def raw_reply(data: bytes, keep: bool = False, then_wait: float = 0.0) -> Reply:
    async def reply(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _raw: bytes) -> bool:
        w.write(data)
        await w.drain()
        await asyncio.sleep(then_wait)
        return keep

    return reply


async def hang(_r: asyncio.StreamReader, _w: asyncio.StreamWriter, _raw: bytes) -> bool:
    await asyncio.sleep(30)
    return False


async def hang_up(_r: asyncio.StreamReader, _w: asyncio.StreamWriter, _raw: bytes) -> bool:
    return False  # close without a byte of answer


async def post(pool: HttpPool, body: bytes = b'{"q": 1}') -> tuple[int, bytes]:
    resp = await pool.post("/chat/completions", body, HEADERS)
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [c async for c in chunks]


async def request_bytes_and_keep_alive_reuse() -> None:
    async with Server(answer(b'{"n": 1}'), answer(b'{"n": 2}')) as srv:
        pool = HttpPool(srv.url)
        assert await post(pool, b'{"hello": "world"}') == (200, b'{"n": 1}')
        assert await post(pool) == (200, b'{"n": 2}')
        assert await post(pool) == (200, b'{"n": 2}')
        assert srv.connections == 1  # one connection, kept alive
        first = srv.requests[0]
        assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        port = srv.url.split(":")[2].split("/")[0]
        assert f"Host: 127.0.0.1:{port}\r\n".encode() in first
        assert b"User-Agent: distillguard-gateway\r\n" in first and b"authorization: Bearer sk-test\r\n" in first and b"Content-Length: 18\r\n" in first
        assert first.endswith(b'\r\n\r\n{"hello": "world"}')
        await pool.aclose()


async def chunked_answer_read_whole_and_streamed() -> None:
    async with Server(chunked(b"data: a\n\n", b"data: b\n\n", b"data: [DONE]\n\n", pause=0.02)) as srv:
        pool = HttpPool(srv.url)
        assert await post(pool) == (200, b"data: a\n\ndata: b\n\ndata: [DONE]\n\n")
        resp = await pool.post("/chat/completions", b"{}", HEADERS)
        pieces = await collect(resp.stream())
        resp.release()
        assert len(pieces) == 3 and b"".join(pieces) == b"data: a\n\ndata: b\n\ndata: [DONE]\n\n"
        assert srv.connections == 1
        await pool.aclose()


async def body_ended_by_closing_the_connection() -> None:
    # neither Content-Length nor chunked: the body runs to the connection's end
    async with Server(raw_reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")) as srv:
        pool = HttpPool(srv.url)
        assert await post(pool) == (200, b"all of it")
        assert await post(pool) == (200, b"all of it")
        assert srv.connections == 2  # not reused
        await pool.aclose()


async def connection_close_header_and_server_closing_idle_connections() -> None:
    async with Server(answer(extra=b"Connection: close\r\n"), answer()) as srv:
        pool = HttpPool(srv.url)
        assert (await post(pool))[0] == 200
        assert (await post(pool))[0] == 200
        assert srv.connections == 2
    # the server closes each connection after answering, without saying so
    async with Server(raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", keep=False)) as srv:
        pool = HttpPool(srv.url)
        for _ in range(3):
            assert await post(pool) == (200, b"ok")
            await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert srv.connections == 3
        await pool.aclose()


async def idle_connections_expire() -> None:
    async with Server(answer()) as srv:
        pool = HttpPool(srv.url, keepalive_expiry=0.05)
        await post(pool)
        await asyncio.sleep(0.1)
        await post(pool)
        assert srv.connections == 2
        await pool.aclose()


async def reused_connection_closed_as_the_request_leaves_is_retried_once() -> None:
    async with Server(answer(b"1"), hang_up, answer(b"3")) as srv:
        pool = HttpPool(srv.url)
        assert await post(pool) == (200, b"1")
        assert await post(pool) == (200, b"3")  # second request hung up on, sent again
        assert len(srv.requests) == 3 and srv.connections == 2
        await pool.aclose()
    # a fresh connection hung up on is not retried; nor is a second hang-up
    async with Server(hang_up) as srv:
        pool = HttpPool(srv.url)
        with pytest.raises(UpstreamDisconnected):
            await post(pool)
        assert len(srv.requests) == 1
        await pool.aclose()
    async with Server(answer(), hang_up) as srv:
        pool = HttpPool(srv.url)
        await post(pool)
        with pytest.raises(UpstreamDisconnected):
            await post(pool)
        assert len(srv.requests) == 3
        await pool.aclose()


async def timeouts() -> None:
    async with Server(hang, answer(b"after")) as srv:
        pool = HttpPool(srv.url, read_timeout=0.2)
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(TimeoutError):
            await post(pool)
        assert 0.15 < loop.time() - t < 2
        assert await post(pool) == (200, b"after")  # on a new connection
        assert srv.connections == 2
        await pool.aclose()
    # the limit is per piece: a stream that trickles for longer in all is not cut
    async with Server(chunked(*[b"data: x\n\n"] * 6, pause=0.12)) as srv:
        pool = HttpPool(srv.url, read_timeout=0.25)
        resp = await pool.post("/chat/completions", b"{}", HEADERS)
        assert len(b"".join(await collect(resp.stream()))) == 6 * 9
        resp.release()
        await pool.aclose()
    # on a kept-alive connection too, and the request is not sent again
    async with Server(answer(), hang) as srv:
        pool = HttpPool(srv.url, read_timeout=0.2)
        await post(pool)
        with pytest.raises(TimeoutError):
            await post(pool)
        assert len(srv.requests) == 2
        await pool.aclose()
    # stalled in the middle of the body
    async with Server(raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", then_wait=5)) as srv:
        pool = HttpPool(srv.url, read_timeout=0.2)
        resp = await pool.post("/chat/completions", b"{}", HEADERS)
        with pytest.raises(TimeoutError):
            await resp.read()
        resp.release()
        await pool.aclose()
    # nothing listens: the connection is refused (an OSError)
    async with Server(answer()) as srv:
        url = srv.url
    pool = HttpPool(url, connect_timeout=1)
    with pytest.raises(ConnectionRefusedError):
        await post(pool)


async def error_statuses_keep_the_connection() -> None:
    async with Server(answer(b'{"error": "boom"}', "500 Internal Server Error"), answer(b"{}", "404 Not Found"), answer()) as srv:
        pool = HttpPool(srv.url)
        assert await post(pool) == (500, b'{"error": "boom"}')
        assert await post(pool) == (404, b"{}")
        assert await post(pool) == (200, b'{"ok": true}')
        assert srv.connections == 1
        await pool.aclose()


async def broken_answers() -> None:
    # cut short: fewer bytes than Content-Length, then the connection ends
    async with Server(raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")) as srv:
        pool = HttpPool(srv.url)
        with pytest.raises(UpstreamDisconnected):
            await post(pool)
        await pool.aclose()
    # a chunked stream broken half way: the first pieces arrive, then the error
    async with Server(chunked(b"data: a\n\n", b"data: b\n\n", pause=0.02, end=False)) as srv:
        pool = HttpPool(srv.url)
        resp = await pool.post("/chat/completions", b"{}", HEADERS)
        got: list[bytes] = []
        with pytest.raises(UpstreamDisconnected):
            async for piece in resp.stream():
                got.append(piece)
        resp.release()
        assert b"".join(got) == b"data: a\n\ndata: b\n\n"
        await pool.aclose()
    # not HTTP at all, and a compressed answer
    async with Server(raw_reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as srv:
        pool = HttpPool(srv.url)
        with pytest.raises(BadResponse):
            await post(pool)
        await pool.aclose()
    gz = zlib.compress(b"{}")
    async with Server(raw_reply(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(gz), gz))) as srv:
        pool = HttpPool(srv.url)
        with pytest.raises(BadResponse, match="gzip"):
            await post(pool)
        assert b"Accept-Encoding: identity\r\n" in srv.requests[0]
        await pool.aclose()


async def stream_left_before_its_end() -> None:
    # the reader stops after the last event; the chunked terminator comes a moment later
    async with Server(chunked(b"data: [DONE]\n\n", pause=0.05), answer()) as srv:
        pool = HttpPool(srv.url)
        resp = await pool.post("/chat/completions", b"{}", HEADERS)
        assert await resp.next_chunk() == b"data: [DONE]\n\n"
        resp.release()
        await asyncio.sleep(0.1)
        assert await post(pool) == (200, b'{"ok": true}')
        assert srv.connections == 1  # the connection read its answer's end and was kept
        await pool.aclose()
    # the rest never comes: the connection is dropped after LINGER seconds
    linger, _http.LINGER = _http.LINGER, 0.1
    try:
        async with Server(chunked(b"data: 1\n\n", b"data: 2\n\n", pause=1.0, end=False), answer()) as srv:
            pool = HttpPool(srv.url)
            resp = await pool.post("/chat/completions", b"{}", HEADERS)
            assert await resp.next_chunk() == b"data: 1\n\n"
            resp.release()
            conn = resp._conn
            await asyncio.sleep(0.2)
            assert conn.closed and not pool._idle
            assert await post(pool) == (200, b'{"ok": true}') and srv.connections == 2
            await pool.aclose()
    finally:
        _http.LINGER = linger


async def second_answer_to_one_request() -> None:
    two = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"
    async with Server(raw_reply(two, keep=True), answer()) as srv:
        pool = HttpPool(srv.url)
        with pytest.raises(BadResponse, match="more than one answer"):
            await post(pool)
        assert await post(pool) == (200, b'{"ok": true}') and srv.connections == 2
        await pool.aclose()


async def interim_answer_is_skipped() -> None:
    async with Server(raw_reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", keep=True)) as srv:
        pool = HttpPool(srv.url)
        assert await post(pool) == (200, b"ok")
        await pool.aclose()


async def pool_limit_and_cancellation() -> None:
    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter, raw: bytes) -> bool:
        await asyncio.sleep(0.05)
        return await answer()(r, w, raw)

    async with Server(slow) as srv:
        pool = HttpPool(srv.url, connections=2)
        results = await asyncio.gather(*(post(pool) for _ in range(6)))
        assert all(status == 200 for status, _ in results)
        assert srv.most_open == 2 and srv.connections == 2
        # a request cancelled while waiting for its answer, and one cancelled while queued
        tasks = [asyncio.create_task(post(pool)) for _ in range(3)]
        await asyncio.sleep(0.01)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert pool._busy == 0 and not pool._waiters
        assert await post(pool) == (200, b'{"ok": true}')
        await pool.aclose()


async def slow_reader_pauses_the_upstream() -> None:
    piece = b"x" * 65536
    async with Server(chunked(*[piece] * 32), answer()) as srv:
        pool = HttpPool(srv.url)
        resp = await pool.post("/chat/completions", b"{}", HEADERS)
        conn = resp._conn
        total, paused, most = 0, False, 0
        async for chunk in resp.stream():
            total += len(chunk)
            await asyncio.sleep(0.01)  # a slow client downstream
            paused |= conn.paused
            most = max(most, conn.buffered)
        resp.release()
        assert total == 32 * len(piece)
        assert paused and most < HIGH_WATER + 4 * len(piece)
        assert await post(pool) == (200, b'{"ok": true}') and srv.connections == 1  # reading resumed, connection reused
        await pool.aclose()


def _self_signed() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for localhost, and a client
    context that trusts only it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d, "cert.pem"), Path(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert, key)
        client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def tls() -> None:
    server, client = _self_signed()
    async with Server(answer(b"1"), chunked(b"data: a\n\n", b"data: b\n\n"), tls=server) as srv:
        pool = HttpPool(srv.url, ssl_context=client)
        assert await post(pool) == (200, b"1")
        assert await post(pool) == (200, b"data: a\n\ndata: b\n\n")
        assert srv.connections == 1
        await pool.aclose()
        # the system's default trust does not know the certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(HttpPool(srv.url))


async def errors_mapped_to_api_errors() -> None:
    """What the gateway answers for each client failure (`_upstream.py`)."""
    async with Server(answer()) as srv:
        closed = srv.url
    cases: list[tuple[str, Reply | None, int, str]] = [
        ("refused", None, 502, "could not be reached (ConnectionRefusedError)"),
        ("garbage", raw_reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), 502, "sent an unreadable answer (BadResponse)"),
        ("hang", hang, 504, "did not answer within 0.2 s"),
        ("cut", raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"), 502, "unreadable answer (UpstreamDisconnected)"),
        ("503", answer(b"overloaded", "503 Service Unavailable"), 502, "failed with HTTP 503 (overloaded)"),
        ("400", answer(b"bad field", "400 Bad Request"), 400, "refused the request with HTTP 400 (bad field)"),
    ]
    for name, reply, status, needle in cases:
        if reply is None:
            up = OpenAIUpstream(closed, timeout=0.2)
            with pytest.raises(ApiError) as err:
                await up.forward("chat.completions", b"{}")
        else:
            async with Server(reply) as srv:
                up = OpenAIUpstream(srv.url, timeout=0.2)
                with pytest.raises(ApiError) as err:
                    await up.forward("chat.completions", b"{}")
                await up.aclose()
        assert err.value.status == status and needle in err.value.message, (name, err.value.message)
    # a stream broken half way
    async with Server(chunked(b"data: {}\n\n", pause=0.02, end=False)) as srv:
        up = OpenAIUpstream(srv.url, timeout=0.2)
        got: list[bytes] = []
        with pytest.raises(ApiError) as err:
            async for piece in up.forward_stream("chat.completions", b"{}"):
                got.append(piece)
        assert got == [b"data: {}\n\n"] and err.value.status == 502 and "broke the stream (UpstreamDisconnected)" in err.value.message
        await up.aclose()


def test_header_lines_refuse_line_breaks() -> None:
    assert header_lines({"a": "b", "c": "d"}) == b"a: b\r\nc: d\r\n"
    with pytest.raises(ValueError, match="line break"):
        header_lines({"x-api-key": "k\r\nevil: 1"})
    with pytest.raises(ValueError, match="http"):
        HttpPool("ftp://example.com")


@pytest.mark.parametrize("url", ["http://", "https://:443/v1", "http://host:port/v1"])
def test_upstream_url_checked_when_built(url: str) -> None:
    with pytest.raises(ConfigError, match="no usable host or port"):
        OpenAIUpstream(url)
    with pytest.raises(ConfigError):
        AnthropicUpstream(url)


def test_upstream_key_with_a_line_break_is_refused_when_built() -> None:
    with pytest.raises(ConfigError, match="line breaks") as err:
        OpenAIUpstream("http://127.0.0.1:9/v1", api_key="sk-1\r\nx-evil: 1")
    assert "sk-1" not in str(err.value)  # no secret in the message
    with pytest.raises(ConfigError, match="line breaks"):
        AnthropicUpstream("http://127.0.0.1:9", api_key="k\n")



CASES = [tls, errors_mapped_to_api_errors, stream_left_before_its_end, second_answer_to_one_request, request_bytes_and_keep_alive_reuse, chunked_answer_read_whole_and_streamed, body_ended_by_closing_the_connection, connection_close_header_and_server_closing_idle_connections, idle_connections_expire, reused_connection_closed_as_the_request_leaves_is_retried_once, timeouts, error_statuses_keep_the_connection, broken_answers, interim_answer_is_skipped, pool_limit_and_cancellation, slow_reader_pauses_the_upstream]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__)
def test_client(case: Callable[[], Awaitable[None]], loop: str) -> None:
    """Each case on asyncio's own loop and on uvloop (which `distillguard serve` runs)."""
    factory = asyncio.new_event_loop
    if loop == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(case(), 20))
