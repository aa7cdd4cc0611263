"""Exact tail of a weighted count of green tuples.

Under H0 each distinct scored tuple is green with probability gamma, independently
(`_detect`). When a test gives tuple i an integer weight w_i >= 0 chosen without the
key, the statistic S = sum_i w_i * green_i is a sum of independent scaled Bernoullis,
and its tail is computed exactly: the distribution of S is the convolution, over the
weight values v, of v * Binomial(n_v, gamma). With all weights 1 this is the binomial
tail of `_detect._global_log_p`.

The convolution is done under an exponentially tilted measure (Esscher): with theta
chosen so that the tilted mean is the observed S, the probabilities that matter lie
near the mode rather than in a tail that would underflow, and

    P(S >= s) = M(theta) * E_theta[exp(-theta * S); S >= s],

with M the moment generating function. Terms are combined in log space.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import signal, stats


def weighted_binom_logsf(counts: npt.NDArray[np.int64], s: int, gamma: float) -> float:
    """Natural log of P(sum_v v * Binomial(counts[v], gamma) >= s), exactly.

    Args:
        counts: `counts[v]` is the number of tuples of weight v (v = 0, 1, ...).
        s: the observed weighted count of green tuples.
        gamma: the probability that a tuple is green under H0.

    Returns:
        The log tail probability (0.0 for s <= 0, -inf above the largest possible sum).
    """
    counts = np.asarray(counts, dtype=np.int64)
    v = np.arange(counts.size, dtype=np.float64)
    if s <= 0:
        return 0.0
    if s > int((counts * np.arange(counts.size)).sum()):
        return -math.inf

    def tilted_mean(theta: float) -> float:
        e = gamma * np.exp(theta * v)
        return float((counts * v * e / (1.0 - gamma + e)).sum())

    theta = 0.0
    if s > tilted_mean(0.0):
        lo, hi = 0.0, 1.0
        while tilted_mean(hi) < s and hi < 64.0:
            hi *= 2.0
        for _ in range(60):  # bisection: any theta >= 0 is exact, this one is well conditioned
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if tilted_mean(mid) < s else (lo, mid)
        theta = lo
    log_mgf = float((counts * np.log1p(gamma * np.expm1(theta * v))).sum())
    pmf = np.ones(1)
    for w in range(1, counts.size):
        n = int(counts[w])
        if n == 0:
            continue
        e = gamma * math.exp(theta * w)
        spread = np.zeros(n * w + 1)
        spread[::w] = stats.binom.pmf(np.arange(n + 1), n, e / (1.0 - gamma + e))
        pmf = np.clip(signal.fftconvolve(pmf, spread), 0.0, None)
    tail = pmf[s:]
    with np.errstate(divide="ignore"):
        terms = np.log(tail) - theta * np.arange(s, pmf.size, dtype=np.float64)
    top = float(terms.max())
    return log_mgf + top + math.log(float(np.exp(terms - top).sum()))
