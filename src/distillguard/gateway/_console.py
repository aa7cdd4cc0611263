"""The analyst console mounted in the gateway, over the gateway's own capture.

The console reads a traffic log and a scan; the gateway has a database and a live detector. So
the console here works on a snapshot: the captured traffic exported in the log format and the
online detector's current verdicts, rebuilt when a page is asked for and the snapshot is older
than `max_age` seconds (events still in the capture queue join the next one). Analysts' actions go straight into the gateway's overrides, so they
apply to serving at once and to the next snapshot.

Behind the admin token: `Authorization: Bearer TOKEN`, or open `/console/?token=TOKEN` once in a
browser, which sets a cookie for the console's own paths.
"""

from __future__ import annotations

import asyncio
import hmac
import shutil
import tempfile
import time
from collections.abc import Sequence
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from distillguard.gateway._gateway import Gateway

COOKIE = "dg_console"


class LiveConsole:
    """An ASGI app that serves the console for a running gateway."""

    def __init__(self, gw: Gateway, max_age: float = 60.0) -> None:
        self.gw = gw
        self.max_age = max_age
        self._app: Any = None
        self._built = 0.0
        self._dir: Path | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        token = self.gw.config.admin_token
        if token is None:
            await _plain(send, 403, "The console is disabled; start the gateway with --admin-token.")
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        given = query.get("token", [""])[0]
        if given and hmac.compare_digest(given.encode(), token.encode()):
            root = scope.get("root_path", "") or "/console"
            await _redirect(send, root + "/", f"{COOKIE}={token}; Path={root}; HttpOnly; SameSite=Strict")
            return
        if not _authorised(scope, token):
            await _plain(send, 401, "Send 'Authorization: Bearer ADMIN_TOKEN', or open /console/?token=ADMIN_TOKEN once.")
            return
        app = await self._current()
        await app(scope, receive, send)

    async def _current(self) -> Any:
        async with self._lock:
            if self._app is None or time.monotonic() - self._built > self.max_age:
                self._app = await asyncio.to_thread(self._build)
                self._built = time.monotonic()
        return self._app

    def _build(self) -> Any:
        from distillguard.gateway._export import export_log
        from distillguard.traffic import write_table
        from distillguard.ui import create_app

        work = Path(tempfile.mkdtemp(prefix="distillguard-console-"))
        export_log(self.gw.store, work / "log")
        verdicts_dir = work / "verdicts"
        online = self.gw.online
        if online is not None:
            verdicts, campaigns = online.detector.tables()
        else:
            from distillguard.traffic import CAMPAIGNS, VERDICTS

            verdicts, campaigns = VERDICTS.schema.empty_table(), CAMPAIGNS.schema.empty_table()
        write_table(verdicts_dir, "verdicts", verdicts)
        write_table(verdicts_dir, "campaigns", campaigns)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = work
        return create_app(work / "log", verdicts_dir, on_action=self._on_action, warm_campaigns=0)

    def _on_action(self, overrides: Sequence[Any]) -> None:
        for o in overrides:
            self.gw.store.add_override(o.account_id, o.action, o.by, o.note)
            if self.gw.online is not None:
                self.gw.online.set_override(o.account_id, o.action)
        self.gw.refresh()


def _authorised(scope: Any, token: str) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            given = value.decode().removeprefix("Bearer ").strip()
            if hmac.compare_digest(given.encode(), token.encode()):
                return True
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie(value.decode())
            morsel = jar.get(COOKIE)
            if morsel is not None and hmac.compare_digest(morsel.value.encode(), token.encode()):
                return True
    return False


async def _plain(send: Any, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})


async def _redirect(send: Any, location: str, cookie: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode())]})
    await send({"type": "http.response.body", "body": b""})
