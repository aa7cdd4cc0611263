"""Raw-socket clients: what a hostile client sends that an HTTP library would not."""

from __future__ import annotations

import socket


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def send_head(url: str, head: bytes, timeout: float = 3.0) -> socket.socket:
    """Connect and send `head` (request line and headers, maybe not all); the open socket."""
    s = socket.create_connection(host_port(url), timeout=timeout)
    s.sendall(head)
    return s


def read_status(s: socket.socket) -> int | None:
    """The status of the answer on `s`, or None if the server closed without one or the read
    timed out."""
    got = b""
    try:
        while b"\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (TimeoutError, ConnectionResetError):
        return None
    if not got.startswith(b"HTTP/1."):
        return None
    return int(got.split(b" ", 2)[1])


def closed_by_server(s: socket.socket) -> bool:
    """True if the server closed `s` (EOF or reset) before the socket's timeout."""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
