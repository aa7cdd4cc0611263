"""The report's plots, drawn with matplotlib's Agg backend and returned as PNG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from distillguard.report._metrics import Evaluation

_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
#: At most this many campaigns get a panel each (the rest are in the tables).
MAX_CAMPAIGN_PANELS = 24
_POINTS_PER_PERSONA = 300


def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    # A bare Figure renders with Agg and never touches pyplot's global state.
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def score_distributions(evaluations: Sequence[Evaluation]) -> bytes:
    """Per verdict set, the score of each persona's accounts (box plus a sample of points)."""
    # Distill personas on top, then benign ones (the evaluation lists them in that order).
    personas = list(dict.fromkeys(p.persona for p in evaluations[0].personas))[::-1]
    labels = {p.persona: p.label for p in evaluations[0].personas}
    n = len(evaluations)
    fig, axes = _figure(1, n, 4.2 * n + 1.5, 0.38 * len(personas) + 1.6)
    rng = np.random.default_rng(0)  # only jitters and samples the dots drawn
    for k, ev in enumerate(evaluations):
        ax = axes[0][k]
        data = [ev.scores_by_persona.get(p, np.zeros(0)) for p in personas]
        pos = np.arange(len(personas))
        ax.boxplot(
            [d if len(d) else np.array([np.nan]) for d in data],
            positions=pos,
            orientation="horizontal",
            showfliers=False,
            widths=0.6,
        )
        for i, (p, d) in enumerate(zip(personas, data, strict=True)):
            if not len(d):
                continue
            sample = d if len(d) <= _POINTS_PER_PERSONA else rng.choice(d, _POINTS_PER_PERSONA)
            color = _COLORS[0] if labels.get(p) == "distill" else _COLORS[1]
            ax.scatter(
                sample,
                i + rng.uniform(-0.2, 0.2, len(sample)),
                s=7,
                alpha=0.5,
                color=color,
                linewidths=0,
            )
        ax.set_yticks(pos)
        ax.set_yticklabels(
            [f"{p} ({labels.get(p, '?')})" for p in personas] if k == 0 else [""] * len(personas)
        )
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("score")
        ax.set_title(ev.name)
        ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def campaign_timelines(evaluations: Sequence[Evaluation]) -> bytes | None:
    """Per campaign: cumulative events served, those served before detection, when caught."""
    campaigns = [c for c in evaluations[0].campaigns if c.events][:MAX_CAMPAIGN_PANELS]
    if not campaigns:
        return None
    ncols = min(3, len(campaigns))
    nrows = math.ceil(len(campaigns) / ncols)
    fig, axes = _figure(nrows, ncols, 5.0 * ncols, 3.2 * nrows)
    lookups = [{c.campaign_id: c for c in ev.campaigns} for ev in evaluations]
    for idx, c in enumerate(campaigns):
        ax = axes[idx // ncols][idx % ncols]
        # The curves start at zero at the campaign's first event and rise to each slice's end.
        start = int(
            c.timeline_end_us[0]
            - (c.timeline_end_us[-1] - c.timeline_end_us[0]) / max(1, len(c.timeline_end_us) - 1)
        )
        x = _dates(np.r_[start, c.timeline_end_us])
        ax.fill_between(x, np.r_[0, c.timeline_events], color="0.85", label="all events")
        for k, (ev, look) in enumerate(zip(evaluations, lookups, strict=True)):
            ci = look.get(c.campaign_id)
            if ci is None or not len(ci.timeline_harvested):
                continue
            color = _COLORS[k % len(_COLORS)]
            ax.plot(
                x,
                np.r_[0, ci.timeline_harvested],
                color=color,
                label=f"{ev.name}: before detection",
            )
            if ci.caught_us is not None:
                ax.axvline(_dates(np.array([ci.caught_us]))[0], color=color, ls="--", lw=1)
            elif ci.first_flagged_us is not None:
                ax.axvline(_dates(np.array([ci.first_flagged_us]))[0], color=color, ls=":", lw=1)
        ax.set_title(f"{c.campaign_id} ({c.accounts} accounts)", fontsize=9)
        ax.set_ylabel("events (cumulative)", fontsize=8)
        ax.tick_params(labelsize=7)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
        if idx == 0:
            ax.legend(fontsize=7, loc="upper left")
    for idx in range(len(campaigns), nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    return _png(fig)


def pr_curves(evaluations: Sequence[Evaluation]) -> bytes:
    """Precision against recall over the score, one curve per verdict set, flags marked."""
    fig, axes = _figure(1, 1, 6.0, 4.5)
    ax = axes[0][0]
    for k, ev in enumerate(evaluations):
        color = _COLORS[k % len(_COLORS)]
        ap = ev.average_precision
        ap_text = "n/a" if math.isnan(ap) else f"{ap:.3f}"
        ax.step(
            ev.pr.recall,
            ev.pr.precision,
            where="post",
            color=color,
            label=f"{ev.name} (AP {ap_text})",
        )
        if not math.isnan(ev.precision):
            ax.plot([ev.account_recall], [ev.precision], "o", color=color)
    ax.set_xlabel("recall (distill accounts)")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="dots: the accounts flagged", title_fontsize=8)
    return _png(fig)


def _dates(us: np.ndarray[Any, Any]) -> list[datetime]:
    return [datetime.fromtimestamp(int(t) / 1e6, tz=UTC) for t in us]
