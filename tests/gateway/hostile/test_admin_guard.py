"""The admin API checks its token and the body size before it reads a byte of the body."""

from __future__ import annotations

import httpx

from ..support import ADMIN, Running
from .raw import read_status, send_head

HUGE = 100_000_000


def _post_head(path: str, length: int, token: str | None = None, extra: bytes = b"") -> bytes:
    auth = f"authorization: Bearer {token}\r\n".encode() if token else b""
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n".encode()
            + auth + extra + b"\r\n")


def test_no_token_is_refused_before_the_body_is_read(running: Running) -> None:
    # the body is announced but never sent: an answer at all means it was not waited for
    with send_head(running.url, _post_head("/admin/keys", HUGE)) as s:
        assert read_status(s) == 401
    with send_head(running.url, _post_head("/admin/overrides", HUGE, "wrong-token-0123456789")) as s:
        assert read_status(s) == 401


def test_a_huge_body_with_the_token_is_refused_unread(running: Running) -> None:
    with send_head(running.url, _post_head("/admin/keys", HUGE, ADMIN)) as s:
        assert read_status(s) == 413


def test_a_chunked_body_is_cut_off(running: Running) -> None:
    head = (b"POST /admin/accounts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
            + f"authorization: Bearer {ADMIN}\r\n\r\n".encode())
    with send_head(running.url, head) as s:
        piece = b"x" * 32_768
        for _ in range(4):  # 128 KiB, over the admin API's 64 KiB
            s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        assert read_status(s) == 413


def test_the_admin_api_still_works(running: Running) -> None:
    r = httpx.post(running.url + "/admin/accounts", json={"account_id": "guarded"}, headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201
    assert httpx.get(running.url + "/admin/stats").status_code == 401
