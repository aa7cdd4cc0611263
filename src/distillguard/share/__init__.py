"""Partners' indicators (STIX 2.1): import a bundle, load match sets, match a traffic log.

The scan reads these before it starts (`distillguard scan --indicators`); a campaign's own
bundle is written by `distillguard.cases.export_bundle` with the definitions kept here
(`pattern_for`, `share_hash`, `TEMPLATE_SQL`), so both sides always agree.
"""

from distillguard.share._indicators import (
    INDICATOR_KINDS,
    SHARE_SALT,
    TEMPLATE_SQL,
    ImportReport,
    Indicator,
    IndicatorSet,
    import_bundle,
    load_indicators,
    matched_accounts,
    pattern_for,
    share_hash,
    summarize_matches,
)

__all__ = [
    "INDICATOR_KINDS",
    "SHARE_SALT",
    "TEMPLATE_SQL",
    "ImportReport",
    "Indicator",
    "IndicatorSet",
    "import_bundle",
    "load_indicators",
    "matched_accounts",
    "pattern_for",
    "share_hash",
    "summarize_matches",
]
