"""Whether a key strangers hold by chance counts against an account: the own-asks gate.

An e-mail domain, a sign-up hour or an address is suspicious because of what its other
accounts ask; a stranger holds it by chance. Such a key counts against an account only when
the account itself asks what a harvester asks: its share of requests asking for reasoning,
grades or training data, or its prompts' mean P(distill), is at least `min_share`. One
decision, read at two depths: the weak link modules (`_evidence/_base.LinkEvidence`, config
`evidence.<kind>.min_own_asks` and `own_asks_min_events`) and rarity's key evidence
(`_rarity._gate_on_own_asks`, config `evidence.rarity.key_min_share`, every account judged).
"""

from __future__ import annotations

import numpy as np

PERCENT = 100.0  # P(distill) is summed per account in whole percent


def own_asks(elicitation: np.ndarray, distill_percent: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per account: the larger of its share of requests asking for reasoning, grades or
    training data (`elicitation`) and its prompts' mean P(distill) (`distill_percent`, summed
    in whole percent over its `n` requests)."""
    out: np.ndarray = np.maximum(elicitation, distill_percent / np.maximum(n, 1.0) / PERCENT)
    return out


def weak_key_counts(own: np.ndarray, min_share: float, n: np.ndarray | None = None,
                    min_events: int = 0) -> np.ndarray:
    """Per account: whether a weak key counts against it. It does where its own asks (`own`)
    are at least `min_share` (0: for every account), and where it has sent fewer than
    `min_events` requests (`n`): so few say too little about what it asks."""
    counts: np.ndarray = own >= min_share
    if min_events > 0:
        if n is None:
            raise ValueError("weak_key_counts: min_events needs the accounts' request counts n")
        counts |= n < min_events
    return counts
