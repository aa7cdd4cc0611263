"""Evaluations as tables: plain rows, rendered by rich (terminal), Markdown (README), HTML."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.table import Table

from distillguard.report._metrics import CAUGHT_SHARE, Evaluation


@dataclass(frozen=True)
class Rows:
    """A table as strings: a title, column headers, rows."""

    title: str
    headers: list[str]
    rows: list[list[str]]


def _pct(x: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.{digits}f}%"


def _num(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def _blocked(ev: Evaluation) -> str:
    by = ev.blocked_by_persona
    if not by:
        return "0"
    return ", ".join(f"{p} {n}" for p, n in sorted(by.items()))


_METRICS: list[tuple[str, Callable[[Evaluation], str]]] = [
    (
        "account recall",
        lambda e: f"{_pct(e.account_recall)} ({e.flagged_distill}/{e.distill_accounts})",
    ),
    (
        "false-positive rate",
        lambda e: f"{_pct(e.false_positive_rate, 2)} ({e.flagged_benign}/{e.benign_accounts})",
    ),
    (
        f"campaign recall (>= {CAUGHT_SHARE:.0%} flagged)",
        lambda e: f"{_pct(e.campaign_recall, 0)} ({e.campaigns_caught}/{len(e.campaigns)})",
    ),
    (
        "harvest before detection",
        lambda e: f"{_pct(e.harvest_before_detection)} ({e.harvested_events}/{e.distill_events})",
    ),
    (
        "harvest outside held flags",
        lambda e: f"{_pct(e.harvest_outside_held_flags)} ({e.unheld_events}/{e.distill_events})"
        + ("" if e.has_flag_periods else " (no flag periods: from first flag on)"),
    ),
    ("average precision (score)", lambda e: _num(e.average_precision)),
    ("hard negatives blocked", lambda e: str(e.hard_negatives_blocked)),
    ("benign blocked, by persona", _blocked),
]


def summary_rows(evaluations: Sequence[Evaluation]) -> Rows:
    """The headline metrics, one column per verdict set."""
    return Rows(
        "Detection scored against the labels",
        ["metric", *(ev.name for ev in evaluations)],
        [[label, *(fn(ev) for ev in evaluations)] for label, fn in _METRICS],
    )


def persona_rows(evaluations: Sequence[Evaluation]) -> Rows:
    """Share of each persona's accounts flagged (blocked in brackets), per verdict set."""
    lookups = [{(p.persona, p.label): p for p in ev.personas} for ev in evaluations]
    rows = []
    for p in evaluations[0].personas:
        cells = []
        for look in lookups:
            q = look.get((p.persona, p.label))
            cells.append("n/a" if q is None else f"{_pct(q.flagged_share, 2)} ({q.blocked})")
        rows.append([p.persona, p.label, str(p.accounts), *cells])
    return Rows(
        "Accounts flagged by persona (false-positive rate for benign ones; blocked in brackets)",
        ["persona", "label", "accounts", *(ev.name for ev in evaluations)],
        rows,
    )


def campaign_rows(evaluations: Sequence[Evaluation]) -> Rows:
    """Per campaign: share of its accounts flagged, harvest before detection (and outside held
    flags), caught or not."""
    lookups = [{c.campaign_id: c for c in ev.campaigns} for ev in evaluations]
    rows = []
    for c in evaluations[0].campaigns:
        cells = []
        for look in lookups:
            ci = look.get(c.campaign_id)
            if ci is None:
                cells.append("n/a")
                continue
            mark = "caught" if ci.caught else "missed"
            cells.append(
                f"{_pct(ci.flagged_share, 0)} flagged, {_pct(ci.harvest_share)} harvested "
                f"({_pct(ci.unheld_share)} outside held flags), {mark}"
            )
        rows.append([c.campaign_id, str(c.accounts), str(c.events), *cells])
    return Rows(
        "Campaigns: accounts flagged, harvest before detection (outside held flags)",
        ["campaign", "accounts", "events", *(ev.name for ev in evaluations)],
        rows,
    )


def rich_table(rows: Rows) -> Table:
    """Render rows as a rich table (numbers right-aligned)."""
    table = Table(title=rows.title)
    for i, h in enumerate(rows.headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows.rows:
        table.add_row(*r)
    return table


def markdown_table(rows: Rows) -> str:
    """Render rows as a Markdown table."""
    lines = [
        "| " + " | ".join(rows.headers) + " |",
        "| --- |" + " ---: |" * (len(rows.headers) - 1),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows.rows]
    return "\n".join(lines) + "\n"
