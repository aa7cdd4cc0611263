"""The simulator: a labelled traffic log of a benign population and distillation campaigns,
on real prompts from the shipped corpora (`distillguard simulate`)."""

from distillguard.simulate._corpora import (
    BENIGN_SETS,
    DISTILL_SETS,
    OPT_IN_LICENCES,
    PERMISSIVE_SETS,
    Corpora,
    find_corpora,
    load_corpora,
)
from distillguard.simulate._engine import SimulationResult, simulate
from distillguard.simulate._plot import plot_overview
from distillguard.simulate._scenario import (
    CampaignSpec,
    Scenario,
    campaign_family,
    default_scenario_text,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "BENIGN_SETS",
    "DISTILL_SETS",
    "OPT_IN_LICENCES",
    "PERMISSIVE_SETS",
    "CampaignSpec",
    "Corpora",
    "Scenario",
    "SimulationResult",
    "campaign_family",
    "default_scenario_text",
    "find_corpora",
    "load_corpora",
    "load_scenario",
    "parse_scenario",
    "plot_overview",
    "simulate",
]
