"""Reports: score verdicts against labels, tables, the HTML report with plots, the demo."""

from distillguard.report._casedata import Account, Attribute, Campaign, CaseStore, Template
from distillguard.report._casefile import casefile_html, casefile_pdf, write_casefile
from distillguard.report._casesample import write_sample_case
from distillguard.report._demo import DemoResult, run_demo
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
from distillguard.report._stix import (
    ImportReport,
    IndicatorSet,
    export_bundle,
    import_bundle,
    load_indicators,
    share_hash,
    summarize_matches,
    write_bundle,
)
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
    "Account",
    "Attribute",
    "Campaign",
    "CampaignScore",
    "CaseStore",
    "DemoResult",
    "Evaluation",
    "ImportReport",
    "IndicatorSet",
    "PRCurve",
    "PersonaScore",
    "Rows",
    "Template",
    "campaign_rows",
    "casefile_html",
    "casefile_pdf",
    "evaluate",
    "export_bundle",
    "import_bundle",
    "load_indicators",
    "markdown_table",
    "persona_rows",
    "pr_curve",
    "render_report",
    "rich_table",
    "run_demo",
    "share_hash",
    "summarize_matches",
    "summary_rows",
    "write_bundle",
    "write_casefile",
    "write_report",
    "write_sample_case",
]
