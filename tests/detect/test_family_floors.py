"""Floors for the default detector on every campaign family the README reports.

One small log per scenario (simulated and scanned once per module, on first use), one test
per family: the family's account recall and harvest before detection (its campaigns
together), and the benign false-positive rate and flagged hard negatives of its log. A
change that loses a family fails here.

Each floor is the value measured on these logs (config 2026.12.5; `python -m
tests.detect.family_floors DIR` prints them) less a stated margin; re-measure after a change
that moves them on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .family_floors import FamilyResult, LogRun, run_log

# What each scenario's log holds, at a size that simulates and scans in well under a minute
# on two cores (events of the whole log; the scenario's accounts scale with it).
RUNS = {
    "default": LogRun("default", None, seed=7, events=40_000),
    "reseller": LogRun("reseller", "tune_reseller_carried.toml", seed=21, events=40_000),
    "card": LogRun("card", "family_single_link_card.toml", seed=62, events=40_000),
    "email_signup": LogRun("email_signup", "family_single_link_email_signup.toml", seed=63,
                           events=40_000),
    "content_only": LogRun("content_only", "family_content_only.toml", seed=61, events=40_000),
}

# Margins under the measured values: recall may lose about two accounts in forty, harvest
# may grow five points, before a test fails.
RECALL_MARGIN = 0.05
HARVEST_MARGIN = 0.05
# The target for benign accounts (issue 14): at most 0.1% flagged, no hard negative.
# These logs hold 576-723 benign accounts, where one account is 0.14-0.17%, over the target:
# none may be flagged (the rate itself is measured on the 300k-event logs of
# docs/benchmarks-families.md).
MAX_FALSE_POSITIVE_RATE = 0.001


@dataclass(frozen=True)
class Measured:
    """A family's values on its log, as measured: the floors derive from them."""

    log: str
    recall: float
    harvest: float


# Measured on the logs of RUNS (flagged accounts / accounts; served events / events).
MEASURED: dict[str, Measured] = {
    "hydra": Measured("default", recall=57 / 58, harvest=427 / 6778),
    "templated": Measured("default", recall=6 / 6, harvest=34 / 927),
    # (The default log's one reseller-carried campaign is not caught at 40k events: 0 of 2.)
    "reseller_carried": Measured("reseller", recall=4 / 4, harvest=332 / 3500),
    "single_link_card": Measured("card", recall=47 / 47, harvest=165 / 4071),
    "single_link_email": Measured("email_signup", recall=24 / 24, harvest=137 / 1992),
    "single_link_signup": Measured("email_signup", recall=24 / 24, harvest=127 / 2231),
    "content_only": Measured("content_only", recall=28 / 40, harvest=1263 / 3300),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, FamilyResult]]:
    cache: dict[str, dict[str, FamilyResult]] = {}

    def get(log: str) -> dict[str, FamilyResult]:
        if log not in cache:
            cache[log] = run_log(RUNS[log], Path(tmp_path_factory.mktemp(log)))
        return cache[log]

    return get


@pytest.mark.parametrize("family", sorted(MEASURED))
def test_the_default_detector_keeps_each_family(
        family: str, results: Callable[[str], dict[str, FamilyResult]]) -> None:
    m = MEASURED[family]
    r = results(m.log)[family]
    assert r.recall >= m.recall - RECALL_MARGIN, (family, r)
    assert r.harvest <= m.harvest + HARVEST_MARGIN, (family, r)
    assert r.false_positive_rate <= MAX_FALSE_POSITIVE_RATE, (family, r)
    assert r.hard_negatives_flagged == 0, (family, r)
