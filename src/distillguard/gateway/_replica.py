"""How a replica follows changes other replicas write: keys, overrides and limits.

Replicas poll the store. Two things make a plain "rows newer than the last one seen" poll
miss changes: timestamps from the writing hosts' clocks (a host whose clock is behind writes
rows that sort before ones already seen), and transactions that commit in another order than
they took their ids or timestamps. So timestamps come from the database's clock (`Store`
writes them), each poll reads again a window (`REPLICATION_OVERLAP_US`) before the newest
row seen, and override ids skipped by a poll are asked for again for a while (they may be
still committing). Re-read rows are applied only if they changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: how far before the newest change seen each poll reads again (database clock, µs): longer
#: than any write transaction takes to commit
REPLICATION_OVERLAP_US = 10_000_000
#: seconds an override id skipped by a poll is asked for again (a rolled-back id never comes)
OVERRIDE_GAP_WAIT_S = 60.0
#: skipped override ids are looked for only this far below the newest id
OVERRIDE_GAP_SPAN = 1000


class ChangeFeed:
    """Rows of a table with a database-clock `updated_us`, keyed by `key`; `poll` gives those
    that changed since the last poll, including ones that committed late."""

    def __init__(self, read: Callable[[int], list[dict[str, Any]]], key: str) -> None:
        self._read = read
        self._key = key
        self.cursor = 0
        self._applied: dict[Any, tuple[Any, ...]] = {}

    def poll(self) -> list[dict[str, Any]]:
        out = []
        for r in self._read(self.cursor - REPLICATION_OVERLAP_US if self.cursor else 0):
            state = tuple(r.values())
            if self._applied.get(r[self._key]) != state:
                self._applied[r[self._key]] = state
                out.append(r)
            self.cursor = max(self.cursor, int(r["updated_us"]))
        return out


class OverrideFeed:
    """Overrides in id order (the database's sequence), with ids that commit late."""

    def __init__(self, read: Callable[[int, list[int]], list[dict[str, Any]]]) -> None:
        self._read = read
        self.cursor = 0
        self._gaps: dict[int, float] = {}
        self._last: dict[str, int] = {}  # newest override id applied per account

    def poll(self) -> list[dict[str, Any]]:
        rows = sorted(self._read(self.cursor, list(self._gaps)), key=lambda r: r["id"])
        now = time.monotonic()
        seen = {r["id"] for r in rows}
        for i, since in list(self._gaps.items()):
            if i in seen or now - since > OVERRIDE_GAP_WAIT_S:
                del self._gaps[i]
        top = max(seen, default=self.cursor)
        for i in range(max(self.cursor + 1, top - OVERRIDE_GAP_SPAN), top):
            if i not in seen:
                self._gaps[i] = now
        self.cursor = max(self.cursor, top)
        out = []
        for r in rows:
            # a late override older than one applied for its account must not undo it
            if r["id"] > self._last.get(r["account_id"], 0):
                self._last[r["account_id"]] = r["id"]
                out.append(r)
        return out
