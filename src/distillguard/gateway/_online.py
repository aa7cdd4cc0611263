"""Online detection: feed newly captured events to the detector's incremental state in the
background and apply its verdicts to the policy, without a restart."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distillguard.enforce import Policy

log = logging.getLogger("distillguard.gateway")


def events_table(rows: Sequence[Mapping[str, Any] | tuple[Any, ...]]) -> Any:
    """Captured rows (store shape, `ts_us`; mappings or EVENT_FIELDS tuples) as an events
    table in the traffic log format."""
    import pyarrow as pa

    from distillguard.gateway._store import EVENT_FIELDS, event_tuples
    from distillguard.traffic import EVENTS, conform

    columns = list(zip(*event_tuples(rows), strict=True)) if rows else [() for _ in EVENT_FIELDS]
    cols: dict[str, Any] = {}
    for name, values in zip(EVENT_FIELDS, columns, strict=True):
        if name == "ts_us":
            cols["ts"] = pa.array(values, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        else:
            cols[name] = pa.array(values, EVENTS.schema.field(name).type)
    return conform("events", pa.table(cols))


class OnlineLoop:
    """Owns an `OnlineDetector`; `feed` is called with each batch capture wrote."""

    def __init__(self, detector: Any, policy: Policy, interval: float = 5.0, max_pending: int = 200_000,
                 accounts: Callable[[], Any] | None = None) -> None:
        self.detector = detector
        self.accounts = accounts
        self._known: set[str] = set()
        self.policy = policy
        self.interval = interval
        self.max_pending = max_pending
        self._pending: list[Any] = []
        self.updates = 0
        self.events_seen = 0
        self.last_changed = 0
        self.last_error: str | None = None
        # step() and tables() run in worker threads (detection loop, console snapshot)
        self._lock = threading.Lock()

    @classmethod
    def create(cls, policy: Policy, interval: float, config: Path | None,
               accounts: Callable[[], Any] | None = None) -> OnlineLoop | None:
        try:
            from distillguard import detect
        except ImportError as exc:
            log.warning("online detection is off: distillguard.detect cannot be imported (%s)", exc)
            return None
        # Judges declared end users apart as well (see detect/_endusers); an older build has
        # only the account detector.
        factory = getattr(detect, "EndUserDetector", None) or getattr(detect, "OnlineDetector", None)
        if factory is None:
            log.warning("online detection is off: this build has no distillguard.detect.OnlineDetector")
            return None
        return cls(factory(config), policy, interval, accounts=accounts)

    def warm(self) -> None:
        """Do the first step's imports (scipy.sparse, pandas, polars' engine: about a second of CPU
        holding the GIL) at start-up instead of in the middle of serving (blocking)."""
        self.detector.verdicts()
        if self.accounts is not None:
            self.accounts()
        events_table([])

    def feed(self, rows: list[Any]) -> None:
        if len(self._pending) + len(rows) > self.max_pending:
            log.warning("online detection is behind; skipping %d events", len(rows))
            return
        self._pending.extend(rows)

    def set_override(self, account_id: str, action: str) -> None:
        fn = getattr(self.detector, "set_override", None)
        if fn is not None:
            fn(account_id, action)

    def tables(self) -> tuple[Any, Any]:
        """The detector's current verdicts and campaigns tables (blocking)."""
        with self._lock:
            out: tuple[Any, Any] = self.detector.tables()
            return out

    def step(self) -> int:
        """Fold pending events into the detector and apply its verdicts (blocking); returns changes."""
        with self._lock:
            return self._step()

    def _step(self) -> int:
        from distillguard.gateway._store import EVENT_FIELDS, event_tuples

        rows, self._pending = event_tuples(self._pending), []
        if rows:
            ts, account = EVENT_FIELDS.index("ts_us"), EVENT_FIELDS.index("account_id")
            rows.sort(key=lambda r: r[ts])
            # sign-up metadata matters to the detector: send the accounts table when new ones appear
            new = {r[account] for r in rows} - self._known
            accounts = None
            if new and self.accounts is not None:
                accounts = self.accounts()
                self._known |= new
            self.detector.update(events_table(rows), accounts)
        advance = getattr(self.detector, "advance", None)
        if advance is not None:
            advance(time.time_ns() // 1000)
        if not rows and self.updates:
            return 0
        verdicts = self.detector.verdicts()
        cols = [c for c in ("account_id", "action", "campaign_id", "reasons", "score") if c in verdicts.column_names]
        changed = self.policy.apply_verdicts(verdicts.select(cols + [c for c in ("end_users_apart",)
                                                                     if c in verdicts.column_names]).to_pylist())
        end_users = getattr(self.detector, "end_user_verdicts", None)
        if end_users is not None:
            changed += self.policy.apply_end_user_verdicts(end_users().to_pylist())
        keys = getattr(self.detector, "campaign_keys", None)
        first = getattr(getattr(self.detector, "config", None), "first_request", None)
        if keys is not None and first is not None and first.enabled:
            self.policy.set_campaign_keys(keys(), first.action)
        # counted once their verdicts apply, so `events_seen` says what policy already reflects
        self.events_seen += len(rows)
        self.updates += 1
        self.last_changed = changed
        if changed:
            log.info("online detection: %d accounts changed action after %d events", changed, self.events_seen)
        return changed

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.step)
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - detection failures never touch serving
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("online detection step failed", exc_info=True)
