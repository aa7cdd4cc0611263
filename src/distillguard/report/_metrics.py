"""Score a scan's verdicts against the simulator's labels.

Exactly as the traffic-log format's "How a scan is scored" says:

- an account is *flagged* when its action is `throttle` or `block` (`monitor` is free);
- account recall = flagged `distill` accounts / `distill` accounts;
- false-positive rate = flagged `benign` accounts / `benign` accounts, overall and per persona;
- harvest before detection = of all `distill` events, the share whose `ts` is earlier than
  their account's `first_flagged_ts`; every event of an unflagged account counts.
- harvest outside held flags = of all `distill` events, the share served while their account
  was not held flagged: outside every period of the scan's `flag_periods` table (a flag
  dropped later lets the account harvest again, and those events count). Verdicts without
  that table (another detector's) hold each flagged account from its `first_flagged_ts` on,
  which is harvest before detection again.

Choices the format leaves open, made here and documented in the README:

- An account in `labels` but not in the verdicts is not flagged (score 0).
- A flagged account with a null `first_flagged_ts` gives no evidence of *when* it was
  stopped, so all its events count as harvested (it is still flagged for recall).
  An account whose action is not flagged is unflagged whatever its `first_flagged_ts` says.
- A campaign (label `campaign_id`) is *caught* when at least `CAUGHT_SHARE` (half) of its
  accounts are flagged; it is caught at the moment the account that reaches that share was
  flagged. Campaign recall = caught campaigns / campaigns. The share flagged is reported too.
- Hard negatives are the benign personas that share signals with attacks legitimately
  (`HARD_NEGATIVE_PERSONAS`); the report counts their *blocked* accounts per persona.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard._errors import LogFormatError
from distillguard._logsql import has_table, quote_ident, register_view
from distillguard.report._pr import PRCurve, pr_curve

#: A campaign counts as caught when at least this share of its accounts is flagged.
CAUGHT_SHARE = 0.5

#: Benign personas that legitimately look like attacks in some way (issue 2's hard negatives,
#: and issue 14's look-alikes of content-only and single-link campaigns).
HARD_NEGATIVE_PERSONAS = frozenset(
    {"enterprise_batch", "eval_runner", "classroom", "reseller", "template_developer",
     "student", "judge_lab", "benchmark_researcher", "oss_app_developer"}
)

#: Points on each campaign's cumulative-events timeline.
TIMELINE_BINS = 120

_NO_CAMPAIGN = "(no campaign)"
_NO_PERSONA = "(unknown)"


@dataclass(frozen=True)
class PersonaScore:
    """How one persona fared: accounts, flagged (throttle or block), blocked."""

    persona: str
    label: str
    accounts: int
    flagged: int
    blocked: int

    @property
    def flagged_share(self) -> float:
        return self.flagged / self.accounts if self.accounts else math.nan


@dataclass(frozen=True, eq=False)
class CampaignScore:
    """How one labelled campaign fared.

    The timeline is cumulative over `TIMELINE_BINS` equal slices of the campaign's active
    time: `timeline_end_us[i]` ends slice i (microseconds since the epoch, UTC),
    `timeline_events[i]` counts its events up to then and `timeline_harvested[i]` those
    served before their account was flagged. `unheld` counts its events served while their
    account was not held flagged (see the module).
    """

    campaign_id: str
    accounts: int
    flagged: int
    events: int
    harvested: int
    caught: bool
    first_flagged_us: int | None
    caught_us: int | None
    timeline_end_us: npt.NDArray[np.int64]
    timeline_events: npt.NDArray[np.int64]
    timeline_harvested: npt.NDArray[np.int64]
    unheld: int = 0

    @property
    def flagged_share(self) -> float:
        return self.flagged / self.accounts if self.accounts else math.nan

    @property
    def harvest_share(self) -> float:
        return self.harvested / self.events if self.events else math.nan

    @property
    def unheld_share(self) -> float:
        """Share of its events served outside its accounts' held flags."""
        return self.unheld / self.events if self.events else math.nan


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The score of one set of verdicts against the labels of one log."""

    name: str
    log_dir: Path
    verdicts_dir: Path
    distill_accounts: int
    benign_accounts: int
    flagged_distill: int
    flagged_benign: int
    distill_events: int
    harvested_events: int
    personas: tuple[PersonaScore, ...]
    campaigns: tuple[CampaignScore, ...]
    pr: PRCurve
    scores_by_persona: dict[str, npt.NDArray[np.float64]]
    missing_verdicts: int
    unlabelled_verdicts: int
    flagged_without_time: int
    notes: tuple[str, ...] = field(default=())
    unheld_events: int = 0
    has_flag_periods: bool = False  # the verdicts came with a `flag_periods` table

    @property
    def account_recall(self) -> float:
        return _ratio(self.flagged_distill, self.distill_accounts)

    @property
    def false_positive_rate(self) -> float:
        return _ratio(self.flagged_benign, self.benign_accounts)

    @property
    def harvest_before_detection(self) -> float:
        return _ratio(self.harvested_events, self.distill_events)

    @property
    def harvest_outside_held_flags(self) -> float:
        """Share of `distill` events served while their account was not held flagged."""
        return _ratio(self.unheld_events, self.distill_events)

    @property
    def campaigns_caught(self) -> int:
        return sum(c.caught for c in self.campaigns)

    @property
    def campaign_recall(self) -> float:
        return _ratio(self.campaigns_caught, len(self.campaigns))

    @property
    def average_precision(self) -> float:
        return self.pr.average_precision

    @property
    def precision(self) -> float:
        """Precision of the flags themselves: flagged distill / all flagged."""
        return _ratio(self.flagged_distill, self.flagged_distill + self.flagged_benign)

    @property
    def blocked_by_persona(self) -> dict[str, int]:
        """Blocked benign accounts per persona (personas with none blocked left out)."""
        return {p.persona: p.blocked for p in self.personas if p.label == "benign" and p.blocked}

    @property
    def hard_negatives_blocked(self) -> int:
        return sum(
            p.blocked
            for p in self.personas
            if p.label == "benign" and p.persona in HARD_NEGATIVE_PERSONAS
        )

    def fpr_by_persona(self) -> dict[str, float]:
        """False-positive rate of each benign persona."""
        return {p.persona: p.flagged_share for p in self.personas if p.label == "benign"}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no curves); nan becomes None."""
        summary: dict[str, Any] = _clean(
            {
                "name": self.name,
                "log_dir": str(self.log_dir),
                "verdicts_dir": str(self.verdicts_dir),
                "account_recall": self.account_recall,
                "false_positive_rate": self.false_positive_rate,
                "precision": self.precision,
                "campaign_recall": self.campaign_recall,
                "campaign_caught_share": CAUGHT_SHARE,
                "harvest_before_detection": self.harvest_before_detection,
                "harvest_outside_held_flags": self.harvest_outside_held_flags,
                "flag_periods": self.has_flag_periods,
                "average_precision": self.average_precision,
                "hard_negatives_blocked": self.hard_negatives_blocked,
                "blocked_by_persona": self.blocked_by_persona,
                "fpr_by_persona": self.fpr_by_persona(),
                "counts": {
                    "distill_accounts": self.distill_accounts,
                    "benign_accounts": self.benign_accounts,
                    "flagged_distill": self.flagged_distill,
                    "flagged_benign": self.flagged_benign,
                    "distill_events": self.distill_events,
                    "harvested_events": self.harvested_events,
                    "unheld_events": self.unheld_events,
                    "campaigns": len(self.campaigns),
                    "campaigns_caught": self.campaigns_caught,
                    "missing_verdicts": self.missing_verdicts,
                    "unlabelled_verdicts": self.unlabelled_verdicts,
                    "flagged_without_time": self.flagged_without_time,
                },
                "personas": [
                    {
                        "persona": p.persona,
                        "label": p.label,
                        "accounts": p.accounts,
                        "flagged": p.flagged,
                        "blocked": p.blocked,
                        "flagged_share": p.flagged_share,
                    }
                    for p in self.personas
                ],
                "campaigns": [
                    {
                        "campaign_id": c.campaign_id,
                        "accounts": c.accounts,
                        "flagged": c.flagged,
                        "flagged_share": c.flagged_share,
                        "caught": c.caught,
                        "events": c.events,
                        "harvested": c.harvested,
                        "harvest_before_detection": c.harvest_share,
                        "unheld": c.unheld,
                        "harvest_outside_held_flags": c.unheld_share,
                        "first_flagged_ts": _iso(c.first_flagged_us),
                        "caught_ts": _iso(c.caught_us),
                    }
                    for c in self.campaigns
                ],
                "notes": list(self.notes),
            }
        )
        return summary


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def evaluate(
    log_dir: str | Path,
    verdicts_dir: str | Path,
    *,
    name: str | None = None,
    caught_share: float = CAUGHT_SHARE,
) -> Evaluation:
    """Score the verdicts in `verdicts_dir` against the labels of the log in `log_dir`.

    Args:
        log_dir: a traffic log with `events` and `labels`.
        verdicts_dir: a directory with a `verdicts` table (as `distillguard scan` writes).
        name: what to call this verdict set in tables and plots (default: the directory name).
        caught_share: share of a campaign's accounts that must be flagged to catch it.

    Returns:
        The evaluation; see the module docstring for the definitions.

    Raises:
        LogFormatError: a table is missing, or the verdicts repeat an account.

    Examples:
        >>> ev = evaluate("log", "verdicts-volume")  # doctest: +SKIP
        >>> ev.account_recall, ev.false_positive_rate, ev.harvest_before_detection  # doctest: +SKIP
    """
    import duckdb

    log = Path(log_dir)
    vdir = Path(verdicts_dir)
    if not has_table(log, "labels"):
        raise LogFormatError(
            "the log has no labels table, so there is nothing to score against; evaluate a "
            "log written by `distillguard simulate` (or add labels.parquet)",
            file=str(log),
        )
    if not has_table(vdir, "verdicts"):
        raise LogFormatError(
            "no verdicts table here; run `distillguard scan LOG_DIR --out VERDICTS_DIR` first",
            file=str(vdir),
        )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        ev = register_view(con, log, "events", "__dg_events")
        lab = register_view(con, log, "labels", "__dg_labels")
        ver = register_view(con, vdir, "verdicts", "__dg_verdicts")
        periods = (register_view(con, vdir, "flag_periods", "__dg_flag_periods")
                   if has_table(vdir, "flag_periods") else None)
        return _evaluate(con, ev, lab, ver, log, vdir, name or vdir.name, caught_share, periods)
    finally:
        con.close()


def _evaluate(
    con: Any,
    ev: str,
    lab: str,
    ver: str,
    log: Path,
    vdir: Path,
    name: str,
    caught_share: float,
    periods: str | None = None,
) -> Evaluation:
    e, la, v = quote_ident(ev), quote_ident(lab), quote_ident(ver)
    dup = con.sql(
        f"SELECT account_id, count(*) AS n FROM {v} GROUP BY account_id HAVING n > 1 "
        "ORDER BY n DESC, account_id LIMIT 1"
    ).fetchall()
    if dup:
        raise LogFormatError(
            f"account {dup[0][0]!r} has {dup[0][1]} verdicts; a scan writes one per account",
            file=str(vdir),
            column="account_id",
        )
    # One row per labelled account, joined with its verdict; the effective flag time is
    # first_flagged_ts for flagged accounts and "never" (null) otherwise.
    con.execute(
        f"""
        CREATE TEMP TABLE acc AS
        SELECT l.account_id,
               l.label,
               coalesce(l.persona, '{_NO_PERSONA}') AS persona,
               CASE WHEN l.label = 'distill' THEN coalesce(l.campaign_id, '{_NO_CAMPAIGN}') END
                   AS campaign_id,
               coalesce(CAST(v.score AS DOUBLE), 0.0) AS score,
               coalesce(v.action IN ('throttle', 'block'), false) AS flagged,
               coalesce(v.action = 'block', false) AS blocked,
               v.account_id IS NOT NULL AS has_verdict,
               CASE WHEN v.action IN ('throttle', 'block') THEN epoch_us(v.first_flagged_ts) END
                   AS flag_us
        FROM {la} l LEFT JOIN {v} v USING (account_id)
        """
    )
    bad_labels = con.sql(
        "SELECT label, count(*) FROM acc WHERE label IS NULL OR label NOT IN ('benign', 'distill') "
        "GROUP BY label LIMIT 1"
    ).fetchall()
    if bad_labels:
        raise LogFormatError(
            f"label {bad_labels[0][0]!r} on {bad_labels[0][1]} account(s); labels are 'benign' "
            "or 'distill'",
            file=str(log),
            column="label",
        )
    acc = con.sql(
        "SELECT account_id, label, persona, campaign_id, score, flagged, blocked, has_verdict, "
        "flag_us FROM acc ORDER BY account_id"
    ).fetchnumpy()
    label = np.asarray(acc["label"]).astype(str)
    persona = np.asarray(acc["persona"]).astype(str)
    score = np.asarray(acc["score"], dtype=np.float64)
    flagged = np.asarray(acc["flagged"], dtype=bool)
    blocked = np.asarray(acc["blocked"], dtype=bool)
    has_verdict = np.asarray(acc["has_verdict"], dtype=bool)
    flag_us_raw = acc["flag_us"]
    flag_known = ~np.ma.getmaskarray(flag_us_raw)
    flag_us = np.ma.filled(np.ma.asarray(flag_us_raw).astype(np.int64), 0)
    campaign = np.asarray(acc["campaign_id"], dtype=object)

    distill = label == "distill"
    benign = ~distill
    unlabelled = con.sql(
        f"SELECT count(*) FROM {v} v ANTI JOIN {la} l USING (account_id)"
    ).fetchall()[0][0]

    personas = []
    for lbl in ("distill", "benign"):
        mask = label == lbl
        for p in sorted(set(persona[mask].tolist())):
            m = mask & (persona == p)
            personas.append(
                PersonaScore(
                    persona=p,
                    label=lbl,
                    accounts=int(m.sum()),
                    flagged=int((flagged & m).sum()),
                    blocked=int((blocked & m).sum()),
                )
            )
    scores_by_persona = {p: score[persona == p] for p in sorted(set(persona.tolist()))}

    _held_periods(con, periods, vdir)
    campaigns = _campaigns(con, e, campaign, distill, flagged, flag_known, flag_us, caught_share)
    distill_events = sum(c.events for c in campaigns)
    harvested = sum(c.harvested for c in campaigns)

    notes = []
    missing = int((~has_verdict).sum())
    if missing:
        notes.append(f"{missing} labelled account(s) have no verdict and count as not flagged.")
    if unlabelled:
        notes.append(f"{unlabelled} account(s) in the verdicts have no label and are ignored.")
    without_time = int((flagged & ~flag_known).sum())
    if without_time:
        notes.append(
            f"{without_time} flagged account(s) have no first_flagged_ts; all their events "
            "count as harvested."
        )
    return Evaluation(
        name=name,
        log_dir=log,
        verdicts_dir=vdir,
        distill_accounts=int(distill.sum()),
        benign_accounts=int(benign.sum()),
        flagged_distill=int((flagged & distill).sum()),
        flagged_benign=int((flagged & benign).sum()),
        distill_events=distill_events,
        harvested_events=harvested,
        personas=tuple(personas),
        campaigns=tuple(campaigns),
        pr=pr_curve(distill, score),
        scores_by_persona=scores_by_persona,
        missing_verdicts=missing,
        unlabelled_verdicts=int(unlabelled),
        flagged_without_time=without_time,
        notes=tuple(notes),
        unheld_events=sum(c.unheld for c in campaigns),
        has_flag_periods=periods is not None,
    )


def _held_periods(con: Any, periods: str | None, vdir: Path) -> None:
    """Temp table `held` (account_id, start_us, end_us; end null: held to the end): the
    scan's `flag_periods`, or, without them, each flagged account from its first_flagged_ts."""
    if periods is None:
        con.execute("CREATE TEMP TABLE held AS SELECT account_id, flag_us AS start_us, "
                    "CAST(NULL AS BIGINT) AS end_us FROM acc WHERE flag_us IS NOT NULL")
        return
    p = quote_ident(periods)
    cols = {r[0] for r in con.sql(f"DESCRIBE {p}").fetchall()}
    missing = sorted({"account_id", "start_ts", "end_ts"} - cols)
    if missing:
        raise LogFormatError(f"the flag_periods table lacks column(s) {', '.join(missing)}",
                             file=str(vdir), column=missing[0])
    con.execute(f"CREATE TEMP TABLE held AS SELECT account_id, epoch_us(start_ts) AS start_us, "
                f"epoch_us(end_ts) AS end_us FROM {p} WHERE start_ts IS NOT NULL")


def _campaigns(
    con: Any,
    e: str,
    campaign: npt.NDArray[Any],
    distill: npt.NDArray[np.bool_],
    flagged: npt.NDArray[np.bool_],
    flag_known: npt.NDArray[np.bool_],
    flag_us: npt.NDArray[np.int64],
    caught_share: float,
) -> list[CampaignScore]:
    # Events of distill accounts, per campaign and timeline slice: all of them, and those
    # served before the account was flagged (flag_us null = never flagged = all count).
    rows = con.sql(
        f"""
        WITH de0 AS (
            SELECT a.account_id, a.campaign_id, epoch_us(x.ts) AS t, a.flag_us
            FROM {e} x JOIN acc a USING (account_id)
            WHERE a.label = 'distill'
        ),
        de AS (
            SELECT de0.*, EXISTS (
                SELECT 1 FROM held h WHERE h.account_id = de0.account_id AND de0.t >= h.start_us
                    AND (h.end_us IS NULL OR de0.t < h.end_us)) AS held
            FROM de0
        ),
        span AS (
            SELECT campaign_id, min(t) AS t0, max(t) AS t1 FROM de GROUP BY campaign_id
        )
        SELECT de.campaign_id, span.t0, span.t1,
               least(CAST(floor((de.t - span.t0) * {TIMELINE_BINS}::DOUBLE
                                / (span.t1 - span.t0 + 1)) AS BIGINT), {TIMELINE_BINS - 1})
                   AS bin,
               count(*) AS n,
               count(*) FILTER (WHERE de.flag_us IS NULL OR de.t < de.flag_us) AS harvested,
               count(*) FILTER (WHERE NOT de.held) AS unheld
        FROM de JOIN span USING (campaign_id)
        GROUP BY ALL
        ORDER BY de.campaign_id, bin
        """
    ).fetchall()
    per: dict[str, dict[str, Any]] = {}
    for cid, t0, t1, b, n, h, u in rows:
        d = per.setdefault(
            cid,
            {
                "t0": t0,
                "t1": t1,
                "n": np.zeros(TIMELINE_BINS, np.int64),
                "h": np.zeros(TIMELINE_BINS, np.int64),
                "u": 0,
            },
        )
        d["n"][b] += n
        d["h"][b] += h
        d["u"] += u
    out = []
    ids = sorted({str(c) for c in campaign[distill].tolist()})
    for cid in ids:
        m = distill & (campaign == cid)
        n_acc = int(m.sum())
        n_flag = int((flagged & m).sum())
        times = np.sort(flag_us[m & flagged & flag_known])
        need = max(1, math.ceil(caught_share * n_acc))
        caught = n_flag >= need
        caught_us = int(times[need - 1]) if caught and len(times) >= need else None
        got = per.get(cid)
        if got is None:  # a labelled campaign whose accounts sent nothing
            ends = np.zeros(0, np.int64)
            cum_n = cum_h = np.zeros(0, np.int64)
        else:
            width = (got["t1"] - got["t0"] + 1) / TIMELINE_BINS
            ends = (got["t0"] + np.arange(1, TIMELINE_BINS + 1) * width).astype(np.int64)
            cum_n = np.cumsum(got["n"])
            cum_h = np.cumsum(got["h"])
        out.append(
            CampaignScore(
                campaign_id=cid,
                accounts=n_acc,
                flagged=n_flag,
                events=int(cum_n[-1]) if len(cum_n) else 0,
                harvested=int(cum_h[-1]) if len(cum_h) else 0,
                caught=caught,
                first_flagged_us=int(times[0]) if len(times) else None,
                caught_us=caught_us,
                timeline_end_us=ends,
                timeline_events=cum_n,
                timeline_harvested=cum_h,
                unheld=int(got["u"]) if got is not None else 0,
            )
        )
    return out
