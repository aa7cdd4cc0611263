"""Capture: events go onto a bounded queue on the request path and a background task writes
them to the store in batches. Never blocks a request; a full queue drops (and counts) events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from distillguard.gateway._store import Store

#: a captured event: a tuple in EVENT_FIELDS order (the gateway's), or a mapping by field name
EventRow = tuple[Any, ...] | dict[str, Any]

log = logging.getLogger("distillguard.gateway")


class Capture:
    """Batching writer of events.

    Args:
        store: where events go.
        maxsize: queue bound; beyond it events are dropped and counted in `dropped`.
        batch_size: most events per write.
        interval: seconds to wait for more events before writing a partial batch.

    Append to `listeners` to be called with each written batch (e.g. the online detector's feed).
    """

    def __init__(self, store: Store, maxsize: int = 100_000, batch_size: int = 2000, interval: float = 0.25) -> None:
        self.store = store
        self.queue: asyncio.Queue[EventRow] = asyncio.Queue(maxsize)
        self.batch_size = batch_size
        self.interval = interval
        self.dropped = 0
        self.written = 0
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

    async def _write(self, batch: list[EventRow]) -> None:
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self.store.insert_events, batch)
                self.written += len(batch)
                break
            except Exception:  # noqa: BLE001 - the store may be briefly unavailable; retry
                if self._closing and delay > 4:
                    log.error("could not write %d captured events at shutdown; giving up", len(batch), exc_info=True)
                    return
                log.warning("writing %d captured events failed; retrying in %.1f s", len(batch), delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        for fn in self.listeners:
            try:
                fn(batch)
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
