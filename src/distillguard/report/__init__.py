"""The evaluation report: score verdicts against a simulated log's labels, tables, the HTML report."""

from distillguard.report._html import render_report, write_report
from distillguard.report._metrics import (
    CAUGHT_SHARE,
    HARD_NEGATIVE_PERSONAS,
    CampaignScore,
    Evaluation,
    PersonaScore,
    evaluate,
)
from distillguard.report._pr import PRCurve, pr_curve
from distillguard.report._tables import (
    Rows,
    campaign_rows,
    markdown_table,
    persona_rows,
    rich_table,
    summary_rows,
)

__all__ = [
    "CAUGHT_SHARE",
    "HARD_NEGATIVE_PERSONAS",
    "CampaignScore",
    "Evaluation",
    "PRCurve",
    "PersonaScore",
    "Rows",
    "campaign_rows",
    "evaluate",
    "markdown_table",
    "persona_rows",
    "pr_curve",
    "render_report",
    "rich_table",
    "summary_rows",
    "write_report",
]
