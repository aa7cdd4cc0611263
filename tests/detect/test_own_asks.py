"""The own-asks gate (`_own_asks`): one decision for the weak links and rarity's key evidence."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.detect._config import OWN_ASKS_MIN_SHARE, load_config
from distillguard.detect._own_asks import own_asks, weak_key_counts


def test_own_asks_is_the_larger_of_elicitation_and_mean_distill() -> None:
    # 10 requests, 3 asking for reasoning: 0.3; P(distill) summed in whole percent: 500 -> 0.5.
    own = own_asks(np.array([0.3, 0.3, 0.0]), np.array([500.0, 100.0, 0.0]),
                   np.array([10.0, 10.0, 0.0]))
    assert own == pytest.approx([0.5, 0.3, 0.0])  # an account with no requests asks nothing


def test_a_weak_key_counts_only_for_an_account_that_asks_like_a_harvester() -> None:
    own = np.array([0.1, 0.25, 0.9])
    assert weak_key_counts(own, 0.25).tolist() == [False, True, True]
    assert weak_key_counts(own, 0.0).all()  # 0: the gate is off


def test_an_account_with_too_few_requests_is_not_judged_yet() -> None:
    own = np.array([0.0, 0.0, 0.0])
    n = np.array([4.0, 5.0, 40.0])
    assert weak_key_counts(own, 0.25, n, min_events=5).tolist() == [True, False, False]
    # Without min_events (rarity's key evidence) every account is judged, however few its asks.
    assert not weak_key_counts(own, 0.25, n).any()
    with pytest.raises(ValueError, match="request counts"):
        weak_key_counts(own, 0.25, min_events=5)


def test_the_weak_links_and_rarity_share_one_threshold() -> None:
    ev = load_config().evidence
    assert ev.email.min_own_asks == ev.created.min_own_asks == ev.rarity.key_min_share
    assert ev.rarity.key_min_share == OWN_ASKS_MIN_SHARE
