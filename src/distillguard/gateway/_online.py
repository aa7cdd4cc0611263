"""Online detection in the gateway's own process: follow the capture, apply verdicts to the
policy, checkpoint, and resume after a restart from the checkpoint plus the events after it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distillguard.enforce import Policy
from distillguard.gateway._detector import DetectorService
from distillguard.gateway._store import Store

log = logging.getLogger("distillguard.gateway")

#: the in-process detector's checkpoint name (the fleet's detector uses its own)
INPROCESS_CHECKPOINT = "inprocess"


def events_table(rows: Sequence[Mapping[str, Any] | tuple[Any, ...]]) -> Any:
    """Captured rows (store shape, `ts_us`; mappings or EVENT_FIELDS tuples) as an events
    table in the traffic log format."""
    from distillguard.gateway._store import EVENT_FIELDS, event_tuples

    columns = list(zip(*event_tuples(rows), strict=True)) if rows else [() for _ in EVENT_FIELDS]
    return columns_table(dict(zip(EVENT_FIELDS, columns, strict=True)))


def columns_table(columns: Mapping[str, Sequence[Any]]) -> Any:
    """Captured columns (store names, `ts_us`; any subset of EVENT_FIELDS holding the format's
    required columns) as an events table in the traffic log format; the others are null."""
    import pyarrow as pa

    from distillguard.traffic import EVENTS, conform

    cols: dict[str, Any] = {}
    for name, values in columns.items():
        if name == "ts_us":
            cols["ts"] = pa.array(values, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        else:
            cols[name] = pa.array(values, EVENTS.schema.field(name).type)
    return conform("events", pa.table(cols))


class LocalDetector(DetectorService):
    """A `DetectorService` whose verdicts go straight to this process's policy.

    It follows the capture in the database like the fleet's detector (so it resumes from its
    checkpoint plus the events captured after it) but takes no lock and publishes nothing:
    `OnlineLoop` applies what changed. After a restore every verdict counts as changed, so a
    new process's empty policy gets them all at the first step.
    """

    def restore(self) -> None:
        super().restore()
        self.published = {}

    def publish(self, changed: list[dict[str, Any]], end_users: list[dict[str, Any]] | None = None,
                keys: tuple[dict[tuple[str, int], str], str] | None = None) -> None:
        pass  # OnlineLoop applies them


class OnlineLoop:
    """`serve --detector inprocess`: a `LocalDetector` stepped in a worker thread, its changed
    verdicts applied to the policy, its state checkpointed every `checkpoint_interval` seconds
    (compressed and written in a thread) and at `close`."""

    def __init__(self, service: LocalDetector, policy: Policy, interval: float = 5.0) -> None:
        self.service = service
        self.policy = policy
        self.interval = interval
        self.updates = 0
        self.events_seen = 0  # counted once their verdicts apply: what policy already reflects
        self.last_changed = 0
        self.last_error: str | None = None
        # step() and tables() run in worker threads (detection loop, console snapshot)
        self._lock = threading.Lock()

    @classmethod
    def create(cls, policy: Policy, interval: float, config: Path | None, store: Store,
               checkpoint_interval: float = 30.0) -> OnlineLoop | None:
        try:
            from distillguard import detect
        except ImportError as exc:
            log.warning("online detection is off: distillguard.detect cannot be imported (%s)", exc)
            return None
        if getattr(detect, "OnlineDetector", None) is None:
            log.warning("online detection is off: this build has no distillguard.detect.OnlineDetector")
            return None
        service = LocalDetector(store, config, interval, checkpoint_interval, name=INPROCESS_CHECKPOINT)
        return cls(service, policy, interval)

    @property
    def detector(self) -> Any:
        return self.service.detector

    def warm(self) -> None:
        """Pay the detector's first-use costs (`DetectorService.warm`: seconds of CPU holding
        the GIL) at start-up instead of in the middle of serving, and load the checkpoint
        (blocking)."""
        with self._lock:
            self.service.warm()
            self.service.restore()
            self.events_seen = self.service.events_seen

    def judged_after(self) -> int:
        """The `updates` count by which rows committed to the capture now are folded in: the
        step under way may have read the capture before them, and on PostgreSQL a step reads
        only up to the top seen one step earlier (`DetectorService.fold`)."""
        horizon = self.service.store.engine.dialect.name == "postgresql"
        return self.updates + (3 if horizon else 2)

    def set_override(self, account_id: str, action: str) -> None:
        """Tell the detector now (the next step reads it from the store too). Never waits for
        the lock: the admin API calls this on the request loop, and a step may take seconds."""
        self.service.detector.set_override(account_id, action)

    def _apply_end_users(self) -> int:
        """Apply the end users' verdicts and publish the flagged campaigns' keys for the
        first-request check; returns the end users whose action changed."""
        det = self.service.detector
        changed = 0
        end_users = getattr(det, "end_user_verdicts", None)
        if end_users is not None:
            changed = int(self.policy.apply_end_user_verdicts(end_users().to_pylist()))
        keys = getattr(det, "campaign_keys", None)
        first = getattr(getattr(det, "config", None), "first_request", None)
        if keys is not None and first is not None and first.enabled:
            self.policy.set_campaign_keys(keys(), first.action)
        return changed

    def tables(self) -> tuple[Any, Any]:
        """The detector's current verdicts and campaigns tables (blocking)."""
        with self._lock:
            out: tuple[Any, Any] = self.service.detector.tables()
            return out

    def step(self) -> int:
        """Fold new events in and apply the changed verdicts (blocking); returns changes."""
        with self._lock:
            svc = self.service
            svc.fold()
            rows = svc.changed()
            changed = self.policy.apply_verdicts(rows)
            svc.mark_published(rows)
            changed += self._apply_end_users()
            svc.steps += 1
            self.events_seen = svc.events_seen
            self.updates += 1
            self.last_changed = changed
            if svc.checkpoint_due():
                svc.checkpoint(background=True)
        if changed:
            log.info("online detection: %d accounts changed action after %d events", changed, self.events_seen)
        return changed

    def close(self) -> None:
        """Checkpoint now (blocking): a clean stop resumes exactly here."""
        with self._lock:
            self.service.wait_saved()
            self.service.checkpoint()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.step)
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - detection failures never touch serving
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("online detection step failed", exc_info=True)
