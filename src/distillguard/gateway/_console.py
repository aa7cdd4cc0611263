"""The analyst console mounted in the gateway, over the gateway's own capture.

The console reads a traffic log and a scan; the gateway has a database and a live detector. So
the console here works on a snapshot: the captured traffic in the log format and the online
detector's current verdicts, pre-aggregated by `distillguard.cases.CaseStore` exactly as
`distillguard ui` does. Pages are always answered from the snapshot in hand; a visit to a
snapshot older than `max_age` seconds starts a rebuild in the background (at most one at a
time, so at most one a minute), and the new snapshot replaces the old one when it is ready.
Only the very first visit has no snapshot: it waits up to `first_wait` seconds (0.5), then gets a
page that refreshes itself until the snapshot is there.

A rebuild runs in a worker thread, never on the proxy routes' path, and is incremental: the
events captured since the last snapshot are appended as a new Parquet part next to the old
parts (hard links, not copies); accounts, overrides and verdicts are written anew. Events
still in the capture queue join the next snapshot. Analysts' actions go straight into the
gateway's overrides (one transaction, in a worker thread), so they apply to serving at once
and to the next snapshot.

Behind the admin token, on every console path (pages, exports, actions), through
`distillguard.ui.ConsoleGuard`: send `Authorization: Bearer TOKEN`, or log in at
`/console/login` (a form) or with a one-time link from `POST /admin/console-link`, which set
an HttpOnly, Secure, SameSite=Strict cookie; cookie-borne actions also need the console's
Origin and CSRF value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillguard.ui._guard import ConsoleGuard

if TYPE_CHECKING:
    from distillguard.gateway._gateway import Gateway

log = logging.getLogger("distillguard.gateway")



class LiveConsole:
    """An ASGI app that serves the console for a running gateway.

    Args:
        gw: the gateway whose capture and verdicts are shown.
        max_age: seconds after which a visit starts a new snapshot.
        first_wait: how long the first visit waits for the first snapshot.
    """

    def __init__(self, gw: Gateway, max_age: float = 60.0, first_wait: float = 0.5) -> None:
        self.gw = gw
        self.max_age = max_age
        self.first_wait = first_wait
        self._app: Any = None
        self._started = 0.0  # when the last rebuild started (monotonic)
        self._building: asyncio.Task[None] | None = None
        self._root: Path | None = None
        self._snapshots: list[Path] = []
        self._seq = 0  # last event (capture order) in the newest snapshot
        self._n = 0
        self.builds = 0
        self.last_build_s = 0.0
        self.last_error: str | None = None
        token = gw.config.admin_token
        self.guard = ConsoleGuard(self._snapshot_app, token) if token is not None else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.guard is None:
            await _plain(send, 403, "The console is disabled; start the gateway with --admin-token.")
            return
        await self.guard(scope, receive, send)

    async def _snapshot_app(self, scope: Any, receive: Any, send: Any) -> None:
        app = await self.current()
        if app is None:
            await _preparing(send, self.last_error)
            return
        await app(scope, receive, send)

    async def current(self) -> Any:
        """The snapshot's app (None while the first one is being built); starts a rebuild in
        the background when the snapshot is older than `max_age`."""
        self.refresh()
        if self._app is None and self._building is not None:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._building), self.first_wait)
        return self._app

    def refresh(self, force: bool = False) -> asyncio.Task[None] | None:
        """Start a rebuild unless one is running or the snapshot is fresh; the running one."""
        stale = self._app is None or time.monotonic() - self._started > self.max_age
        if self._building is None and (stale or force):
            self._started = time.monotonic()
            self._building = asyncio.get_running_loop().create_task(self._rebuild(), name="distillguard-console-snapshot")
        return self._building

    async def _rebuild(self) -> None:
        t0 = time.perf_counter()
        try:
            self._app = await asyncio.to_thread(self._build)
            self.builds += 1
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - a failed snapshot keeps the old one
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("console snapshot failed; keeping the previous one", exc_info=True)
        finally:
            self.last_build_s = time.perf_counter() - t0
            self._building = None

    def _build(self) -> Any:
        """Write the next snapshot and pre-aggregate it (blocking; runs in a worker thread)."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="distillguard-console-"))
        # Snapshots older than the one in use may still serve a request that began before the
        # last swap for a moment; the ones before that go now.
        while len(self._snapshots) > 1:
            shutil.rmtree(self._snapshots.pop(0), ignore_errors=True)
        self._n += 1
        snap = self._root / f"snapshot-{self._n:05d}"
        try:
            return self._write(snap)
        except BaseException:
            shutil.rmtree(snap, ignore_errors=True)
            raise

    def _write(self, snap: Path) -> Any:
        from distillguard.gateway._export import accounts_table, overrides_table
        from distillguard.gateway._online import events_table
        from distillguard.traffic import CAMPAIGNS, VERDICTS, LogWriter, write_table
        from distillguard.ui import create_app

        log_dir, verdicts_dir = snap / "log", snap / "verdicts"
        (log_dir / "events").mkdir(parents=True)
        if self._snapshots:  # the events so far: the previous snapshot's parts, linked
            for part in sorted((self._snapshots[-1] / "log" / "events").glob("part-*.parquet")):
                _link_or_copy(part, log_dir / "events" / part.name)
        seq, store = self._seq, self.gw.store
        with LogWriter(log_dir, append=True) as writer:
            # small batches: converting rows to Arrow holds the GIL, and the proxy routes wait for it
            for rows, last in store.event_tuples_since(self._seq, 5_000):
                writer.write("events", events_table(rows))
                seq = last
            if seq == 0:  # nothing captured yet: the table still needs its schema
                writer.write("events", events_table([]))
        write_table(log_dir, "accounts", accounts_table(store))
        write_table(log_dir, "overrides", overrides_table(store))
        online = self.gw.online
        if online is not None:
            verdicts, campaigns = online.tables()
        else:
            verdicts, campaigns = VERDICTS.schema.empty_table(), CAMPAIGNS.schema.empty_table()
        write_table(verdicts_dir, "verdicts", verdicts)
        write_table(verdicts_dir, "campaigns", campaigns)
        # the top campaigns' plots are drawn here, before the swap: their first visits are fast
        app = create_app(log_dir, verdicts_dir, on_action=self._on_action, warm_campaigns=10, warm_now=True,
                         csrf=self.guard.csrf if self.guard is not None else "")
        self._snapshots.append(snap)
        self._seq = seq
        return app

    def _on_action(self, overrides: Sequence[Any]) -> None:
        """Console actions (called in a worker thread): into the gateway's overrides at once."""
        self.gw.store.add_overrides([(o.account_id, o.action, o.by, o.note) for o in overrides])
        if self.gw.online is not None:
            for o in overrides:
                self.gw.online.set_override(o.account_id, o.action)
        self.gw.refresh()

    def close(self) -> None:
        """Remove the snapshots (gateway shutdown)."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root, self._snapshots = None, []


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


async def _plain(send: Any, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})


async def _preparing(send: Any, error: str | None) -> None:
    why = f"<p>The last attempt failed: {error}</p>" if error else ""
    body = ("<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=2>"
            "<title>distillguard console</title></head><body><h1>Preparing the console</h1>"
            f"<p>The first snapshot of the captured traffic is being built; this page reloads itself.</p>{why}</body></html>")
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"retry-after", b"2")]})
    await send({"type": "http.response.body", "body": body.encode()})
