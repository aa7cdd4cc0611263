"""A campaign's case: the data behind it, its plots, its case file, its bundle for partners.

`CaseStore` pre-aggregates a traffic log and a scan in DuckDB (the analyst console reads it);
`write_casefile` writes the self-contained HTML and PDF for legal and policy teams;
`export_bundle` writes the campaign's indicators as STIX 2.1 (`distillguard.share` reads them).
"""

from distillguard.cases._bundle import SharedValue, campaign_indicators, export_bundle, write_bundle
from distillguard.cases._casedata import (
    KIND_LABELS,
    KIND_PLURALS,
    Account,
    Attribute,
    Campaign,
    CaseStore,
    Template,
    fold_attributes,
)
from distillguard.cases._casefile import casefile_html, casefile_pdf, write_casefile
from distillguard.cases._caseplots import graph_svg, traffic_svg

__all__ = [
    "KIND_LABELS",
    "KIND_PLURALS",
    "Account",
    "Attribute",
    "Campaign",
    "CaseStore",
    "SharedValue",
    "Template",
    "campaign_indicators",
    "casefile_html",
    "casefile_pdf",
    "export_bundle",
    "fold_attributes",
    "graph_svg",
    "traffic_svg",
    "write_bundle",
    "write_casefile",
]
