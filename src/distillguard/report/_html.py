"""The self-contained HTML report: tables and PNG plots embedded in one file."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from distillguard.report import _plots
from distillguard.report._metrics import CAUGHT_SHARE, HARD_NEGATIVE_PERSONAS, Evaluation
from distillguard.report._tables import campaign_rows, persona_rows, summary_rows


def _data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()


def render_report(evaluations: Sequence[Evaluation], title: str = "distillguard evaluation") -> str:
    """The report as one HTML string (plots embedded as PNG data URIs)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    if not evaluations:
        raise ValueError("render_report needs at least one evaluation.")
    env = Environment(
        loader=PackageLoader("distillguard.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    template = env.get_template("report.html.j2")
    return template.render(
        title=title,
        generated=datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC"),
        log_dir=str(evaluations[0].log_dir),
        evaluations=evaluations,
        tables=[summary_rows(evaluations), persona_rows(evaluations), campaign_rows(evaluations)],
        plots={
            "scores": _data_uri(_plots.score_distributions(evaluations)),
            "timelines": _data_uri(_plots.campaign_timelines(evaluations)),
            "pr": _data_uri(_plots.pr_curves(evaluations)),
        },
        caught_share=CAUGHT_SHARE,
        hard_negatives=sorted(HARD_NEGATIVE_PERSONAS),
    )


def write_report(
    evaluations: Sequence[Evaluation], path: str | Path, title: str = "distillguard evaluation"
) -> Path:
    """Write the HTML report for one or more verdict sets of the same log; return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(evaluations, title), encoding="utf-8")
    return out
