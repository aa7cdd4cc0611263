"""Slow, idle, oversized and numerous clients are cut off before they hold the gateway's sockets
or memory: header timeout, header size cap, connection cap, body timeout."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from distillguard.gateway import create_app, issue_key

from ..support import ServerThread, free_port, make_gateway
from .raw import closed_by_server, host_port, read_status, send_head

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, mock_upstream: str) -> Iterator[tuple[str, str]]:
    """(URL, key) of a gateway with tight client limits."""
    gw = make_gateway(f"sqlite:///{tmp_path_factory.mktemp('slow') / 's.db'}", mock_upstream, header_timeout=HEADER_TIMEOUT,
                      max_header_bytes=8192, max_connections=MAX_CONNECTIONS, body_timeout=1.0)
    key = issue_key(gw.store, "slow").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    yield f"http://127.0.0.1:{srv.server.config.port}", key
    srv.stop()


def _timed_close(s: socket.socket) -> float:
    t = time.monotonic()
    assert closed_by_server(s), "the server kept the connection"
    return time.monotonic() - t


def test_idle_and_partial_headers_are_closed(guarded: tuple[str, str]) -> None:
    url, _ = guarded
    with socket.create_connection(host_port(url), timeout=HEADER_TIMEOUT + 3) as idle:
        assert _timed_close(idle) < HEADER_TIMEOUT + 1
    with send_head(url, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n", timeout=HEADER_TIMEOUT + 3) as partial:
        assert read_status(partial) == 408


def test_dribbled_headers_do_not_reset_the_clock(guarded: tuple[str, str]) -> None:
    url, _ = guarded
    with send_head(url, b"POST /v1/chat/completions HTTP/1.1\r\n", timeout=HEADER_TIMEOUT + 3) as s:
        t = time.monotonic()
        try:
            for i in range(40):  # a header line every 0.1 s, forever if allowed
                s.sendall(f"x-drip-{i}: 1\r\n".encode())
                time.sleep(0.1)
        except OSError:
            pass
        assert time.monotonic() - t < HEADER_TIMEOUT + 1.5
        assert read_status(s) in (408, None)


def test_oversized_headers_are_refused(guarded: tuple[str, str]) -> None:
    url, key = guarded
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + f"authorization: Bearer {key}\r\n".encode()
            + b"x-big: " + b"a" * 4_000_000 + b"\r\n\r\n")
    s = socket.create_connection(host_port(url), timeout=5)
    with contextlib.suppress(OSError):  # closed while sending: refused early
        s.sendall(head)
    assert read_status(s) in (431, None)
    s.close()


def test_slow_body_is_cut_off(guarded: tuple[str, str]) -> None:
    url, key = guarded
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {key}\r\ncontent-length: 100\r\n\r\n".encode() + b'{"model":')
    with send_head(url, head, timeout=5) as s:
        t = time.monotonic()
        assert read_status(s) == 408
        assert time.monotonic() - t < 3


def test_connections_beyond_the_cap_are_closed(guarded: tuple[str, str]) -> None:
    url, key = guarded
    socks = [socket.create_connection(host_port(url), timeout=3) for _ in range(MAX_CONNECTIONS + 10)]
    try:
        time.sleep(0.3)
        dropped = 0
        for s in socks:
            s.settimeout(0.05)
            try:
                dropped += s.recv(1) == b""
            except ConnectionResetError:
                dropped += 1
            except TimeoutError:
                pass
        assert dropped >= 10
    finally:
        for s in socks:
            s.close()
    time.sleep(0.2)
    r = httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                   json={"model": "fake-1", "messages": [{"role": "user", "content": "still here"}]})
    assert r.status_code == 200


def test_well_behaved_keep_alive_clients_are_served(guarded: tuple[str, str], tmp_path: Path) -> None:
    url, key = guarded
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}) as c:
        for i in range(3):
            r = c.post("/v1/chat/completions", json={"model": "fake-1", "messages": [{"role": "user", "content": f"k{i}"}]})
            assert r.status_code == 200
            time.sleep(HEADER_TIMEOUT / 2)
