"""The periods during which the replay held each account flagged (throttle or block).

`first_flagged_ts` says when an account was first flagged, not whether the flag held: a
throttle that the next look drops lets the account harvest again. The replay records every
period instead, from the end of the window whose decision flagged the account (or the interim
flag in that window the decision confirmed, `_interim`) to the end of the window whose decision
dropped it (open while it holds at the log's end), so that
`distillguard evaluate` can count what was served outside them (table `flag_periods`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FLAG_PERIODS_SCHEMA = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("start_ts", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("end_ts", pa.timestamp("us", tz="UTC")),  # null: still held at the log's end
])


class FlagPeriods:
    """Per account (replay index): the start of its flag held now (-1: not flagged) and the
    periods already closed (account, start, end in microseconds)."""

    def __init__(self) -> None:
        self.since = np.zeros(0, np.int64)
        self._closed: list[np.ndarray] = []

    def decided(self, flagged: np.ndarray, end_us: int, start_us: np.ndarray | None = None) -> None:
        """The decision at `end_us` flags the accounts where `flagged` is true; a period it
        opens starts at `start_us` per account where given (an interim flag the decision
        confirmed held the account from the request that made it one), else at `end_us`."""
        m = len(flagged)
        if len(self.since) < m:
            self.since = np.concatenate([self.since, np.full(m - len(self.since), -1, np.int64)])
        since = self.since[:m]
        dropped = np.flatnonzero(~flagged & (since >= 0))
        if len(dropped):
            self._closed.append(np.stack(
                [dropped, since[dropped], np.full(len(dropped), end_us, np.int64)], axis=1))
            since[dropped] = -1
        opened = flagged & (since < 0)
        since[opened] = end_us if start_us is None else np.minimum(start_us[:m][opened], end_us)

    def periods(self) -> np.ndarray:
        """(account, start, end) rows, closed and open (end -1), by account then start."""
        held = np.flatnonzero(self.since >= 0)
        rows = np.concatenate([*self._closed, np.stack(
            [held, self.since[held], np.full(len(held), -1, np.int64)], axis=1),
            np.zeros((0, 3), np.int64)])
        return rows[np.lexsort((rows[:, 1], rows[:, 0]))]

    def table(self, ids: list[str]) -> pa.Table:
        """The `flag_periods` table: account_id, start_ts, end_ts (null: held to the end)."""
        rows = self.periods()
        ts = FLAG_PERIODS_SCHEMA.field("start_ts").type
        return pa.table({
            "account_id": pa.array([ids[int(i)] for i in rows[:, 0]], pa.string()),
            "start_ts": pa.array(rows[:, 1], pa.int64()).cast(ts),
            "end_ts": pa.array(rows[:, 2], pa.int64(), mask=rows[:, 2] < 0).cast(ts),
        }, schema=FLAG_PERIODS_SCHEMA)
