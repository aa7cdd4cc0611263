"""The shared state one simulation run hands to every persona and campaign generator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distillguard.simulate._content import Content
from distillguard.simulate._corpora import Corpora
from distillguard.simulate._scenario import Scenario
from distillguard.simulate._world import DAY_US, HOUR_US, Plan, World


@dataclass
class Env:
    scenario: Scenario
    corpora: Corpora
    content: Content
    world: World
    plan: Plan
    model_ix: dict[str, int]
    release_us: dict[str, int]
    p_plain: float  # share of benign first turns sent without pasted context (see docs)
    # single-link campaigns: each account's link group (position in the campaign's accounts)
    link_groups: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def start_us(self) -> int:
        return self.world.start_us

    @property
    def end_us(self) -> int:
        return self.world.end_us

    def models(
        self, rng: np.random.Generator, ts: np.ndarray, mini_share: float, adoption: float,
        tau_days: float = 1.5, pinned: str | None = None,
    ) -> np.ndarray:
        """Model per event: default or mini, and after a release a growing `adoption` share on
        the new model (1 - exp(-(t - release) / tau))."""
        s = self.scenario
        if pinned is not None:
            return np.full(len(ts), self.model_ix[pinned], np.int16)
        m = np.where(rng.random(len(ts)) < mini_share, self.model_ix[s.mini_model], self.model_ix[s.default_model])
        if s.new_model and adoption > 0:
            rel = self.release_us[s.new_model]
            age = (ts - rel) / DAY_US
            p = np.where(age > 0, adoption * (1 - np.exp(-np.maximum(age, 0) / tau_days)), 0.0)
            m = np.where(rng.random(len(ts)) < p, self.model_ix[s.new_model], m)
        return m.astype(np.int16)

    def sample(self, rng: np.random.Generator, arr: np.ndarray, n: int, scale: float = 1.0) -> np.ndarray:
        """Bootstrap `n` token counts from a real trace's column, times `scale`."""
        return np.maximum(1, (arr[rng.integers(len(arr), size=n)] * scale).astype(np.int64))

    def status(self, rng: np.random.Generator, n: int, p429: float = 0.004) -> np.ndarray:
        u = rng.random(n)
        return np.where(u < p429, 429, np.where(u < p429 + 0.001, 500, 200)).astype(np.int16)


def expand_sessions(
    rng: np.random.Generator, starts: np.ndarray, turns: np.ndarray, think_s: float, sigma: float = 0.9,
    empirical: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn session starts and lengths into per-event (session, turn index, ts) with human
    think times between turns: log-normal with median `think_s`, or, given `empirical` gaps
    (seconds, e.g. the Mooncake trace's), those gaps rescaled to median `think_s` with a little
    log-normal jitter."""
    sess = np.repeat(np.arange(len(starts)), turns)
    first = np.cumsum(turns) - turns
    j = np.arange(len(sess)) - np.repeat(first, turns)
    if empirical is not None and len(empirical) > 10:
        scale = think_s / float(np.median(empirical))
        g = empirical[rng.integers(len(empirical), size=len(sess))] * scale * rng.lognormal(0, 0.2, len(sess))
        gap = (g * 1e6).astype(np.int64)
    else:
        gap = (rng.lognormal(np.log(think_s), sigma, size=len(sess)) * 1e6).astype(np.int64)
    gap[j == 0] = 0
    cs = np.cumsum(gap)
    ts = starts[sess] + cs - np.repeat(cs[first], turns)
    return sess, j, ts


__all__ = ["DAY_US", "HOUR_US", "Env", "expand_sessions"]
