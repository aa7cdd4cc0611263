"""The weighted green count's tail is exact: binomial for unit weights, enumeration for small cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from distillguard.watermark import ScoredTuples, detect_tuples
from distillguard.watermark import _seeding as S
from distillguard.watermark._tails import weighted_binom_logsf

from .keys import fixed_key


@pytest.mark.parametrize(("n", "s"), [(100, 25), (100, 50), (2000, 700), (5000, 1500), (40, 40)])
def test_unit_weights_give_the_binomial_tail(n: int, s: int) -> None:
    got = weighted_binom_logsf(np.array([3, n]), s, 0.25)  # weight-0 tuples change nothing
    assert got == pytest.approx(float(stats.binom.logsf(s - 1, n, 0.25)), rel=1e-9, abs=1e-12)


def test_small_cases_match_enumeration() -> None:
    counts = np.array([0, 3, 4, 2])  # weights 1 x3, 2 x4, 3 x2: largest sum 17
    weights = [1] * 3 + [2] * 4 + [3] * 2
    for s in range(0, 19):
        p = sum(
            0.25 ** sum(b) * 0.75 ** (len(b) - sum(b))
            for b in itertools.product((0, 1), repeat=len(weights))
            if sum(w * x for w, x in zip(weights, b, strict=True)) >= s
        )
        want = math.log(p) if p > 0 else -math.inf
        assert weighted_binom_logsf(counts, s, 0.25) == pytest.approx(want, rel=1e-9, abs=1e-12), s


def test_far_tails_do_not_underflow() -> None:
    # 20,000 tuples of weights 1..6, every one green: about 10^-15,000, still finite and exact
    counts = np.array([0] + [20_000 // 6] * 6)
    top = int((counts * np.arange(7)).sum())
    got = weighted_binom_logsf(counts, top, 0.25)
    assert got == pytest.approx(int(counts.sum()) * math.log(0.25), rel=1e-9)
    assert weighted_binom_logsf(counts, top + 1, 0.25) == -math.inf


def test_weighted_p_values_are_exact_under_h0() -> None:
    # weights chosen without the key: across 400 fixed keys the p-value is super-uniform
    rng = np.random.default_rng(5)
    windows = rng.integers(0, 512, size=(3000, 1))
    t = ScoredTuples(
        ctx_ids=S.context_ids(windows),
        windows=windows,
        tokens=rng.integers(0, 512, size=3000),
        tokens_seen=3000,
        dropped_repeats=0,
        dropped_prompt=0,
        weights=rng.integers(1, 7, size=3000),
    )
    ps = np.array([detect_tuples(fixed_key(i), lambda h: t, controls=False).p_value for i in range(400)])
    for level in (0.01, 0.05, 0.2, 0.5):
        assert float(np.mean(ps <= level)) <= level + 2.5 * np.sqrt(level * (1 - level) / 400), level
    assert float(np.mean(ps <= 0.5)) >= 0.4  # and not trivially conservative
    # with the account layer scored too (its trials carry the same weights)
    ps = np.array(
        [detect_tuples(fixed_key(i), lambda h: t, controls=False, served_account="a").p_value for i in range(400)]
    )
    assert float(np.mean(ps <= 0.05)) <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / 400)
    assert float(np.mean(ps <= 0.5)) >= 0.4
