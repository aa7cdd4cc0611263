"""Capture: events go onto a bounded queue on the request path and a background task writes
them to the store in batches. Never blocks a request; a full queue drops (and counts) events.

A batch the store refuses while the store is up holds a row the events table cannot take:
the batch is split until that row is alone, and the row goes to the dead-letter table
(counted in `set_aside`), so one hostile request can never stop capture."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from distillguard.gateway._store import Store, bound_event, event_tuples

#: a captured event: a tuple in EVENT_FIELDS order (the gateway's), or a mapping by field name
EventRow = tuple[Any, ...] | dict[str, Any]

log = logging.getLogger("distillguard.gateway")

#: tries for an event the store refused on its own before it goes to the dead-letter table
SINGLE_ROW_TRIES = 3
#: seconds between those tries
SINGLE_ROW_PAUSE_S = 0.2


class Capture:
    """Batching writer of events.

    Args:
        store: where events go.
        maxsize: queue bound; beyond it events are dropped and counted in `dropped`.
        batch_size: most events per write.
        interval: seconds to wait for more events before writing a partial batch.
        listeners: called with each written batch (e.g. the online detector's feed).
    """

    def __init__(self, store: Store, maxsize: int = 100_000, batch_size: int = 2000, interval: float = 0.25) -> None:
        self.store = store
        self.queue: asyncio.Queue[EventRow] = asyncio.Queue(maxsize)
        self.batch_size = batch_size
        self.interval = interval
        self.dropped = 0
        self.written = 0
        #: events the store refused on their own, kept in its dead-letter table
        self.set_aside = 0
        self.listeners: list[Callable[[list[EventRow]], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[EventRow] | None = None
        self._closing = False

    def submit(self, event: EventRow) -> bool:
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                log.warning("capture queue full: %d events dropped so far", self.dropped)
            return False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="distillguard-capture")

    def _take(self) -> list[EventRow]:
        batch: list[EventRow] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    def _insert(self, batch: list[EventRow]) -> list[tuple[Any, ...]]:
        """Bound and insert a batch (capture thread); returns the rows written.

        Raises when the store is down, so that the caller waits and retries the batch."""
        rows = [bound_event(r) for r in event_tuples(batch)]
        try:
            self.store.insert_events(rows, bounded=True)
            return rows
        except Exception:  # noqa: BLE001 - which driver error a bad row raises varies
            self.store.ping()  # raises on an outage: the whole batch is retried later
        return self._insert_apart(rows)

    def _insert_apart(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # The store is up but refused the batch: halve until each refused row is alone.
        if len(rows) == 1:
            # A lone row gets a few tries, so that a passing lock or conflict (SQLite's
            # "database is locked") does not send a good event to the dead-letter table.
            for attempt in range(SINGLE_ROW_TRIES):
                try:
                    self.store.insert_events(rows, bounded=True)
                    return rows
                except Exception as exc:  # noqa: BLE001 - see _insert
                    self.store.ping()
                    if attempt == SINGLE_ROW_TRIES - 1:
                        self._set_aside(rows[0], exc)
                    else:
                        time.sleep(SINGLE_ROW_PAUSE_S)
            return []
        mid = len(rows) // 2
        written: list[tuple[Any, ...]] = []
        for half in (rows[:mid], rows[mid:]):
            try:
                self.store.insert_events(half, bounded=True)
                written.extend(half)
            except Exception:  # noqa: BLE001 - see _insert
                self.store.ping()
                written.extend(self._insert_apart(half))
        return written

    def _set_aside(self, row: tuple[Any, ...], exc: BaseException) -> None:
        self.set_aside += 1
        error = f"{type(exc).__name__}: {exc}"
        log.error("captured event %r refused by the store, set aside (%d so far): %s", row[0], self.set_aside, error)
        try:
            self.store.set_aside_events([row], error)
        except Exception:  # noqa: BLE001 - the row is lost, but capture goes on
            log.error("could not keep refused event %r in the dead-letter table", row[0], exc_info=True)

    async def _write(self, batch: list[EventRow]) -> None:
        delay = 0.5
        while True:
            try:
                rows = await asyncio.to_thread(self._insert, batch)
                self.written += len(rows)
                break
            except Exception:  # noqa: BLE001 - the store is unavailable; retry
                if self._closing and delay > 4:
                    log.error("could not write %d captured events at shutdown; giving up", len(batch), exc_info=True)
                    return
                log.warning("writing %d captured events failed; retrying in %.1f s", len(batch), delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        if not rows:
            return
        for fn in self.listeners:
            try:
                fn(cast("list[EventRow]", rows))
            except Exception:  # noqa: BLE001 - a listener never stops capture
                log.warning("capture listener failed", exc_info=True)

    async def _run(self) -> None:
        while True:
            first = await self.queue.get()
            # Held here until written: close() rewrites it if cancelled mid-way (no loss, and
            # event_id conflicts make the rewrite a no-op for rows that did land).
            self._inflight = batch = [first]
            if self.interval and self.queue.qsize() < self.batch_size - 1:
                await asyncio.sleep(self.interval)
            batch.extend(self._take())
            await self._write(batch)
            self._inflight = None

    async def flush(self) -> None:
        """Write everything queued now."""
        while True:
            batch = self._take()
            if not batch:
                return
            await self._write(batch)

    async def close(self) -> None:
        """Stop the background task and write whatever is still queued (SIGTERM path)."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            batch, self._inflight = self._inflight, None
            await self._write(batch)
        await self.flush()
