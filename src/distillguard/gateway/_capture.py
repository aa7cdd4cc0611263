"""Capture: events go onto a bounded queue on the request path and a background task writes
them to the store in batches. Never blocks a request; a full queue drops (and counts) events.

With a spool (`_spool.py`), events go to disk instead of the queue: the request waits until
its event is durable, the background task drains the spool to the store from its checkpoint,
and nothing is dropped (a full spool refuses requests instead).

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

from distillguard.gateway._spool import Spool, SpoolFull
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
        spool: a local spool: events are durable on disk before the answer ends, and
            drained from there (then `maxsize` is unused).

    Append to `listeners` to be called with each written batch (e.g. the online detector's feed).
    """

    def __init__(self, store: Store, maxsize: int = 100_000, batch_size: int = 2000, interval: float = 0.25,
                 spool: Spool | None = None) -> None:
        self.store = store
        self.spool = spool
        #: events refused because the spool was full (their requests were answered 503)
        self.refused = 0
        self._wake = asyncio.Event()
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

    def record(self, event: tuple[Any, ...]) -> asyncio.Future[None] | None:
        """Capture one event. With a spool, returns a future that resolves once the event is
        on disk (await it before the answer's last byte) and raises `SpoolFull` when the
        spool cannot take it; without one, queues the event and returns None."""
        if self.spool is None:
            self.submit(event)
            return None
        try:
            return self.spool.append(event)
        except SpoolFull:
            self.refused += 1
            raise

    @property
    def refusing(self) -> bool:
        """True while new requests must be refused: the spool cannot take their events."""
        return self.spool is not None and self.spool.refusing

    def start(self) -> None:
        if self._task is None:
            if self.spool is not None:
                self.spool.start()
                self.spool.on_durable = self._wake.set
                self._task = asyncio.get_running_loop().create_task(self._drain(), name="distillguard-capture")
            else:
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

    async def _write(self, batch: list[EventRow]) -> bool:
        """Write a batch, retrying while the store is down; False if given up at shutdown."""
        delay = 0.5
        while True:
            try:
                rows = await asyncio.to_thread(self._insert, batch)
                self.written += len(rows)
                break
            except Exception:  # noqa: BLE001 - the store is unavailable; retry
                if self._closing and delay > 4:
                    kept = f"kept in the spool {self.spool.dir}" if self.spool is not None else "giving up"
                    log.error("could not write %d captured events at shutdown; %s", len(batch), kept, exc_info=True)
                    return False
                log.warning("writing %d captured events failed; retrying in %.1f s", len(batch), delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        if not rows:
            return True
        for fn in self.listeners:
            try:
                fn(cast("list[EventRow]", rows))
            except Exception:  # noqa: BLE001 - a listener never stops capture
                log.warning("capture listener failed", exc_info=True)
        return True

    async def _drain_once(self) -> int:
        """Write the next batch from the spool and move its checkpoint; rows written (-1: gave up)."""
        assert self.spool is not None
        rows, pos = await asyncio.to_thread(self.spool.read, self.batch_size)
        if not rows:
            return 0
        if not await self._write(cast("list[EventRow]", rows)):
            return -1
        await asyncio.to_thread(self.spool.commit, pos)
        return len(rows)

    async def _drain(self) -> None:
        assert self.spool is not None
        while True:
            self._wake.clear()
            n = await self._drain_once()
            if n >= self.batch_size:
                continue  # a backlog: drain on
            if n == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
            if self.interval:
                await asyncio.sleep(self.interval)  # let a batch gather: one insert per interval

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
        if self.spool is not None:
            # Appends still being synced finish first; what cannot reach the store now stays
            # in the spool for the next start.
            await asyncio.to_thread(self.spool.stop_writer)
            while await self._drain_once() > 0:
                pass
            self.spool.close()
            return
        if self._inflight:
            batch, self._inflight = self._inflight, None
            await self._write(batch)
        await self.flush()
