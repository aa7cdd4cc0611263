"""The detector as a long-lived object: feed it events, ask it for verdicts.

The offline scan replays a log through exactly this object (see `_replay`), and the gateway
keeps one alive over its own capture, so what a scan reports is what a deployment would have
done at the time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from distillguard.detect._config import DetectConfig, load_config
from distillguard.detect._core import Assessment, DecisionCore
from distillguard.detect._decision import BLOCK, THROTTLE
from distillguard.detect._signatures import event_signals
from distillguard.detect._state import DetectorState, Prepared, release_times

if TYPE_CHECKING:
    from distillguard.detect._output import VerdictColumns


class OnlineDetector:
    """Incremental detector state plus the scoring that turns it into verdicts.

    Args:
        config: a `DetectConfig`, a path to a TOML config, or None for the shipped defaults.
        accounts: the accounts table (sign-up metadata), if known up front.
        models: the models table (release times), if known.
        overrides: account id -> analyst decision (`benign`, `allow`, ..., `block`).
        partners: accounts that match partners' shared indicators: watched, and one more kind
            of link when they share keys with a campaign.
    """

    def __init__(
        self,
        config: DetectConfig | str | Path | None = None,
        accounts: pa.Table | None = None,
        models: pa.Table | None = None,
        overrides: dict[str, str] | None = None,
        partners: set[str] | None = None,
    ) -> None:
        self.config = config if isinstance(config, DetectConfig) else load_config(config)
        self.state = DetectorState(
            _frame(accounts) if accounts is not None else None,
            _frame(models) if models is not None else None,
        )
        self.overrides = dict(overrides or {})
        self.state.partners = set(partners or ())
        self._assessment: Assessment | None = None
        self._with_pairs = False
        self._refined: tuple[Assessment, Assessment] | None = None  # (assessed, refined)
        self.core = DecisionCore(self.config)
        # Escalation: a block confirms a throttle that has held for a while (see `_escalate`).
        self._decisions = 0
        self._flagged_at = np.zeros(0, np.int64)  # log time (us) the account was throttled; -1

    def __getstate__(self) -> dict[str, object]:
        # the refined assessment is derived from `_assessment`: not checkpointed
        return {k: v for k, v in self.__dict__.items() if k != "_refined"}

    def __setstate__(self, saved: dict[str, object]) -> None:
        self.__dict__.update(saved)
        self._refined = None

    def update(self, events: pa.Table, accounts: pa.Table | None = None) -> None:
        """Fold new events (format columns, newer than anything fed before) into the state."""
        if accounts is not None and accounts.num_rows:
            self.state.add_account_metadata(_frame(accounts))
        if events.num_rows == 0:
            return
        sig = event_signals(_frame(events)).sort("ts_us", "event_id")
        self.update_signals(sig)

    def update_signals(self, sig: pl.DataFrame) -> None:
        """Fold precomputed per-event signals (from `event_signals`) into the state."""
        self.state.update(sig)
        self._assessment = None

    def apply_window(self, prep: Prepared, w: int, end_us: int) -> None:
        """Fold window `w` of a prepared batch in and move the clock to the window's end."""
        self.state.apply(prep, w)
        self._assessment = None
        self.advance(end_us)

    def advance(self, now_us: int) -> None:
        """Move the clock forward without events (rates are measured up to now)."""
        if now_us > self.state.now_us:
            self.state.now_us = now_us
            self._assessment = None

    def set_models(self, models: pa.Table | None) -> None:
        """Replace the models table (release times): it weighs the events folded in from now
        on; those folded before keep what they were judged with."""
        self.state.releases = release_times(_frame(models) if models is not None else None)

    def set_override(self, account_id: str, decision: str | None) -> None:
        if decision is None:
            self.overrides.pop(account_id, None)
        else:
            self.overrides[account_id] = decision
        self._assessment = None

    def assess(self, with_pairs: bool = True) -> Assessment:
        """Scores and actions as of now; `with_pairs=False` skips the evidence pairs."""
        if self._assessment is None:
            self._decisions += 1
        if self._assessment is None or (with_pairs and not self._with_pairs):
            a = self.core.decide(self.state, self.overrides, with_pairs)
            self._escalate(a)
            self._assessment = a
            self._with_pairs = with_pairs
        return self._assessment

    def _escalate(self, a: Assessment) -> None:
        """Throttle first; block once the throttle has held `block_after_throttle_minutes`.

        A detector that decides as traffic arrives blocks an account only after it has been
        throttled for a while, so evidence that holds for a moment (a burst of coincidences)
        costs a throttle, not a block; a campaign feels the throttle from the first decision
        on. The first decision of a detector (a one-shot scan of a whole batch) has nothing
        earlier to wait for.
        """
        m = len(a.action)
        at = np.full(m, -1, np.int64)
        n = min(m, len(self._flagged_at))
        at[:n] = self._flagged_at[:n]
        now = self.state.now_us
        wait = int(self.config.actions.block_after_throttle_minutes * 60_000_000)
        if wait > 0 and self._decisions > 1:
            manual = np.zeros(m, bool)
            for aid, what in self.overrides.items():
                i = self.state.index.get(aid)
                if i is not None and what == "block":
                    manual[i] = True
            held = (at >= 0) & (now - at >= wait)
            a.action[(a.action == BLOCK) & ~held & ~manual] = THROTTLE
        flagged = a.action >= THROTTLE
        at[flagged & (at < 0)] = now
        at[~flagged] = -1  # dropped back: a new flag waits again
        self._flagged_at = at

    def verdicts(self) -> pa.Table:
        """Current verdicts, one row per account seen (VERDICTS schema plus `evidence`)."""
        return self.tables()[0]

    def tables(self) -> tuple[pa.Table, pa.Table]:
        """Current verdicts and campaigns (the scan's two tables, as of now)."""
        from distillguard.detect._output import campaign_table, verdict_table

        a = self.refined()
        verdicts = verdict_table(self.state, a, self.config, first_flagged_us=None)
        return verdicts, campaign_table(self.state, a, verdicts)

    def refined(self) -> Assessment:
        """`assess()` with campaigns split into their communities, as the tables report them
        (computed once per assessment)."""
        from distillguard.detect._communities import refine_campaigns

        a = self.assess()
        if self._refined is None or self._refined[0] is not a:
            self._refined = (a, refine_campaigns(a, self.config.links.min_accounts))
        return self._refined[1]

    def verdict_columns(self) -> VerdictColumns:
        """The verdicts' cheap columns as of now, and the reasons of any account on demand
        (`VerdictColumns.reasons`): what `verdicts()` says, without building every reason."""
        from distillguard.detect._output import VerdictColumns

        return VerdictColumns(self.state, self.refined(), self.config)


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame
