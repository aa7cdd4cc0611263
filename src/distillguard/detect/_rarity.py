"""Evidence weighed by how rare it is among the log's established accounts.

Every piece of evidence about an account becomes a one-sided p-value: the chance that an
account of the *null population* shows it at least as strongly. The null population is
estimated from the log itself at each look: its *established* accounts (opened at least
`evidence.rarity.established_days` before their first request, not on the enterprise sign-up
channel, with `evidence.rarity.min_events` requests or more for the shares). A score
therefore means the same in every log: "this rare among the accounts that have been here a
while".

| evidence | statistic per account | null tail `P(S >= s)` |
| --- | --- | --- |
| `shared_card` | accounts on its payment fingerprint (1 when not shared) | geometric from `card_min_accounts` on, `rho^(k - card_min_accounts + 1)` (1 below), `rho = (#{K_null >= 2} + 1) / (N_null + 2)`: how often an established account shares a card at all |
| `shared_email`, `shared_signup`, `shared_address` | accounts on its largest *suspicious* key of that kind (e-mail domain, sign-up burst, address; 1 when none) | geometric as above, `rho` fitted on how often established accounts share a key of that kind at all |
| `elicitation` | share of its requests that ask for reasoning, grades or training data | empirical, `(1 + #{S_null >= s}) / (1 + N_null)` |
| `content` | mean P(distill) of its prompts (`_content`) | empirical, as above |

A card is a personal instrument: established accounts share one in pairs (a family) or a
small team, so a card counts from `evidence.rarity.card_min_accounts` accounts on (the size
at which a shared key links accounts, `links.min_accounts`), and each account beyond a small
team is as rare as an established account sharing a card at all: one card behind 40 new
accounts is astronomically rare whatever they do, a team of four is not evidence. E-mail domains, sign-up
hours and addresses are shared by institutions (a university's students, a classroom behind
one NAT that signed up together, an office): a key of those kinds counts only when it is
suspicious for its link module (`_evidence/_links`: enough accounts and a harvest-like
pooled profile of the key's traffic; for an address, accounts that churn like a proxy pool's),
so a classroom or a university's domain, whose traffic together looks like people's, weighs
nothing however many share it, and a kind established accounts share all the time (`rho`
near 1) weighs little even then.

The p-values are combined with the Cauchy combination test (ACAT; Liu and Xie 2020, JASA):
`T = mean_g tan((0.5 - p_g) pi)`, combined `p = arctan2(1, T) / pi`. It is valid under any
dependence between the evidences for small p (elicitation and content are correlated), and a
single strong piece of evidence carries the combination (about `G * p_min`), while several
moderate ones add up. A gated kind counts only where its key is suspicious (elsewhere it is
left out, not p = 1); evidence seen and not rare (p = 1: a card no one else uses, shares
under `min_events`) pulls the combination back hard, so that alone a piece of evidence must
be extreme to flag (about `1e-15 / (G - 1)`, G the pieces counted). An account is flagged when its combined p is at most
`evidence.rarity.max_p` (the false-positive rate per account that the null allows); the keys
count from the account's first request, the shares from `evidence.rarity.min_events`
requests on. Flagged accounts are throttled, never blocked: the evidence is about one
account, not a campaign. Each flagged account's reasons name every piece of evidence with its
p-value and its weight in bits (`-log2 p`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from distillguard.detect._cadence import Cadence
from distillguard.detect._config import DetectConfig
from distillguard.detect._links import PairIndex
from distillguard.detect._own_asks import weak_key_counts
from distillguard.detect._state import (
    DAY_US,
    LINK_KINDS,
    PAIR_ACCOUNT,
    PAIR_CODE,
    PAIR_KEY,
    PAIR_KIND,
    DetectorState,
)
from distillguard.detect._tails import KeptTail, empirical_tail

#: Per key-sharing evidence: the link kind it reads and whether only suspicious keys count.
KEY_EVIDENCE: dict[str, tuple[str, bool]] = {
    "shared_card": ("payment", False),
    "shared_email": ("email", True),
    "shared_signup": ("created", True),
    "shared_address": ("ip", True),
}
EVIDENCE = (*KEY_EVIDENCE, "elicitation", "content")
_KEY_KIND = np.array([LINK_KINDS.index(kind) for kind, _ in KEY_EVIDENCE.values()])
_GATED = np.array([gated for _, gated in KEY_EVIDENCE.values()])
_SHARE_COLUMNS = (EVIDENCE.index("elicitation"), EVIDENCE.index("content"))
_CARD = EVIDENCE.index("shared_card")
# Per link kind (index in LINK_KINDS): its KEY_EVIDENCE column (-1: none), and whether gated.
_COLUMN = np.full(len(LINK_KINDS), -1, np.int64)
_COLUMN[_KEY_KIND] = np.arange(len(KEY_EVIDENCE))
_GATED_LINK = np.zeros(len(LINK_KINDS), bool)
_GATED_LINK[_KEY_KIND] = _GATED
# tan((0.5 - p) pi) loses precision under this p; 1 / (p pi) is its limit there.
_TINY_P = 1e-12
# p-values are combined clipped under 1 (tan is infinite at 1/2 - 1); the term of p = 1.
_MAX_P = 1.0 - 1e-15
_TERM_AT_ONE = float(np.tan((0.5 - np.full(1, _MAX_P)) * np.pi)[0])


@dataclass
class Rarity:
    """Per account (indexed like `state.ids`): the statistic and p-value of each evidence in
    `EVIDENCE` (columns), the combined p-value and whether it flags the account."""

    stat: np.ndarray  # (m, len(EVIDENCE))
    p: np.ndarray  # (m, len(EVIDENCE)); 1 where the evidence is absent
    combined: np.ndarray  # (m,)
    flag: np.ndarray  # (m,) bool
    null_accounts: int  # established accounts the nulls were estimated from

    @classmethod
    def none(cls, m: int = 0) -> Rarity:
        e = len(EVIDENCE)
        return cls(np.zeros((m, e)), np.ones((m, e)), np.ones(m), np.zeros(m, bool), 0)

    def grown(self, m: int) -> Rarity:
        """The same answer for `m` accounts (accounts seen since the last look: no evidence)."""
        k = len(self.combined)
        if k >= m:
            return self
        extra = Rarity.none(m - k)
        return Rarity(np.vstack([self.stat, extra.stat]), np.vstack([self.p, extra.p]),
                      np.concatenate([self.combined, extra.combined]),
                      np.concatenate([self.flag, extra.flag]), self.null_accounts)

    def bits(self) -> np.ndarray:
        """Weight of each evidence in bits, `-log2 p` (0 where absent)."""
        out: np.ndarray = -np.log2(np.clip(self.p, 1e-300, 1.0))
        return out

    def table(self, ids: list[str]) -> pa.Table:
        """One row per account and evidence: account_id, evidence, statistic, p_value, bits,
        combined_p, flagged (accounts with some evidence only)."""
        bits = self.bits()
        acct, ev = np.nonzero(self.p < 1.0)
        return pa.table({
            "account_id": pa.array([ids[i] for i in acct.tolist()], pa.string()),
            "evidence": pa.array([EVIDENCE[e] for e in ev.tolist()], pa.string()),
            "statistic": pa.array(self.stat[acct, ev], pa.float64()),
            "p_value": pa.array(self.p[acct, ev], pa.float64()),
            "bits": pa.array(bits[acct, ev], pa.float64()),
            "combined_p": pa.array(self.combined[acct], pa.float64()),
            "flagged": pa.array(self.flag[acct], pa.bool_()),
        })


def rarity_reason(r: Rarity, i: int) -> tuple[str, dict[str, object]]:
    """The sentence and the evidence entry of account `i` (an analyst can check each number)."""
    words = {
        "shared_card": "{s:.0f} accounts on its payment card",
        "shared_email": "{s:.0f} accounts on its e-mail domain, whose traffic looks like harvesting",
        "shared_signup": "{s:.0f} accounts opened in its sign-up hour, whose traffic looks like "
                         "harvesting",
        "shared_address": "{s:.0f} accounts on one of its addresses, whose traffic looks like "
                          "harvesting",
        "elicitation": "{s:.0%} of its requests ask for reasoning, grades or training data",
        "content": "its prompts read like harvesting task pools (mean P(distill) {s:.2f})",
    }
    bits = r.bits()
    parts = [
        f"{words[name].format(s=r.stat[i, e])} (p = {r.p[i, e]:.2g}, {bits[i, e]:.1f} bits)"
        for e, name in enumerate(EVIDENCE) if r.p[i, e] < 1.0
    ]
    text = (f"rare among the {r.null_accounts} established accounts: " + "; ".join(parts)
            + f"; combined p = {r.combined[i]:.2g}")
    entry: dict[str, object] = {
        "combined_p": float(r.combined[i]), "null_accounts": r.null_accounts,
        "evidence": {name: {"statistic": round(float(r.stat[i, e]), 4),
                            "p": float(r.p[i, e]), "bits": round(float(bits[i, e]), 2)}
                     for e, name in enumerate(EVIDENCE) if r.p[i, e] < 1.0},
    }
    return text, entry


def share_tail(null_shares: np.ndarray, k: np.ndarray, first: int = 2) -> np.ndarray:
    """P(K >= k) for accounts on one key under a geometric null from `first` accounts on,
    `rho^(k - first + 1)` (1 under `first`: that many on one key is ordinary).

    `rho = (#shares + 1) / (N + 2)` among the N null accounts, `null_shares` saying which of
    them share a key of the kind at all. Fitted on that share, not on the largest keys: an
    operator's aged accounts on its own keys are established too, and an empirical tail
    would let them set the bar for their own campaign.
    """
    return geometric_tail(share_rate(int(null_shares.sum()), len(null_shares)), k, first)


def share_rate(shares: int, n: int) -> float:
    """`rho = (shares + 1) / (n + 2)`: how often one of `n` null accounts shares a key."""
    return (float(shares) + 1.0) / (n + 2.0)


def geometric_tail(rho: float, k: np.ndarray, first: int) -> np.ndarray:
    """`rho^(k - first + 1)` from `first` on, 1 under it (most accounts: no power taken)."""
    out = np.ones(len(k))
    hit = np.flatnonzero(k >= first)
    out[hit] = rho ** (k[hit] - first + 1)
    return out


def cauchy_terms(p: np.ndarray) -> np.ndarray:
    """The Cauchy combination's term of each p-value, `tan((0.5 - p) pi)` with p clipped
    into (0, 1) (`1 / (p pi)`, its limit, under `_TINY_P`)."""
    p = np.clip(p, 1e-300, _MAX_P)
    out: np.ndarray = np.where(p < _TINY_P, 1.0 / (p * np.pi), np.tan((0.5 - p) * np.pi))
    return out


def cauchy_combination(p: np.ndarray, counted: np.ndarray | None = None) -> np.ndarray:
    """ACAT over the columns of `p` with equal weights (Liu and Xie 2020), per row over the
    columns `counted` says (all when None; each row counts at least one)."""
    terms = cauchy_terms(p)
    if counted is None:
        t = terms.mean(axis=1)
    else:
        t = np.where(counted, terms, 0.0).sum(axis=1) / np.maximum(counted.sum(axis=1), 1)
    out: np.ndarray = np.arctan2(1.0, t) / np.pi
    return out


def key_sizes(state: DetectorState, suspicious: np.ndarray | None,
              by_key: PairIndex | None) -> np.ndarray:
    """Per account and `KEY_EVIDENCE` (columns): the accounts on its largest key of that kind
    (only suspicious keys for the gated kinds; 1 where none). From all the shared pairs: the
    answer `KeySizes` keeps up to date between looks."""
    m = state.size
    k = np.ones((m, len(KEY_EVIDENCE)))
    n_keys = state.shared_keys
    on = state.shared_account_pairs()
    if suspicious is not None and by_key is not None and suspicious[:n_keys].any():
        pairs = state.shared_pairs()
        rows = pairs[by_key.select(pairs, suspicious[:n_keys], ordered=False)]
        on = np.concatenate([on[on[:, PAIR_KIND] == _KEY_KIND[0]],
                             rows[np.isin(rows[:, PAIR_KIND], _KEY_KIND[_GATED])]])
    else:
        on = on[on[:, PAIR_KIND] == _KEY_KIND[0]]
    for e, kind in enumerate(_KEY_KIND.tolist()):
        mine = on[on[:, PAIR_KIND] == kind]
        if len(mine):
            np.maximum.at(k[:, e], mine[:, PAIR_ACCOUNT],
                          state.key_accounts[mine[:, PAIR_CODE]].astype(np.float64))
    return k


def counted_keys(link: np.ndarray, suspicious: np.ndarray) -> np.ndarray:
    """Per shared key (its link kind index, whether it is suspicious): whether `key_sizes`
    counts it (a kind of `KEY_EVIDENCE`, and suspicious where the kind is gated)."""
    out: np.ndarray = (_COLUMN[link] >= 0) & (~_GATED_LINK[link] | suspicious)
    return out


class KeySizes:
    """`key_sizes` kept up to date from one look to the next.

    Per account and column it holds the largest key size over the pairs on keys it counts
    (`counted_keys`), and it keeps those pairs (few: cards, and the gated keys that are
    suspicious). A key's size only grows and pairs are only appended, so a look folds in
    (maximum) the pairs of keys that grew or started to count; the accounts on a key that
    stopped counting (a gated key no longer suspicious) are recomputed from their pairs kept.
    A key grows exactly when a pair of it is appended, and only a gated key's suspicion
    changes whether it counts, so a look reads the pairs appended since and the keys whose
    suspicion changed, not every key or pair.
    """

    def __init__(self) -> None:
        self.k = np.ones((0, len(KEY_EVIDENCE)))
        self.n = 0  # shared pairs read
        self.counted = np.zeros(0, bool)  # per shared key id, as of the last look
        self.rows = np.zeros((0, 4), np.int64)  # the shared pairs on keys counted then

    def __setstate__(self, saved: dict[str, object]) -> None:
        # A checkpoint written without the pairs kept: the next look reads them all afresh.
        self.__init__()  # type: ignore[misc]
        if "rows" in saved:
            self.__dict__.update(saved)

    def update(self, state: DetectorState, suspicious: np.ndarray | None,
               by_key: PairIndex) -> np.ndarray:
        """`key_sizes(state, suspicious, by_key)` (a view, valid until the next update)."""
        m, n_keys = state.size, state.shared_keys
        pairs = state.shared_pairs()
        if len(self.k) < m:
            grown = np.ones((max(m, 2 * len(self.k)), len(KEY_EVIDENCE)))
            grown[: len(self.k)] = self.k
            self.k = grown
        counted, flipped = self._counted(state, suspicious, n_keys)
        started, gone = flipped[counted[flipped]], flipped[~counted[flipped]]
        left = np.zeros(m, bool)
        if len(gone):
            on_gone = np.zeros(n_keys, bool)
            on_gone[gone] = True
            out = on_gone[self.rows[:, PAIR_KEY]]
            left[self.rows[out, PAIR_ACCOUNT]] = True
            self.rows = self.rows[~out]
        new = pairs[self.n :]
        add = [self.rows, new[counted[new[:, PAIR_KEY]]]]
        if len(started):
            on_started = np.zeros(n_keys, bool)
            on_started[started] = True
            before = by_key.select(pairs, on_started, ordered=False)
            add.append(pairs[before[before < self.n]])
        self.rows = np.concatenate(add)
        # Accounts on a key that stopped counting: afresh from their other pairs.
        self.k[: m][left] = 1.0
        # Keys that grew (their other pairs now count the new size) or started to count.
        fold = np.zeros(n_keys, bool)
        fold[new[:, PAIR_KEY]] = True
        fold[started] = True
        self._fold(self.rows[fold[self.rows[:, PAIR_KEY]] | left[self.rows[:, PAIR_ACCOUNT]]],
                   state)
        self.n, self.counted = len(pairs), counted
        return self.k[:m]

    def _counted(self, state: DetectorState, suspicious: np.ndarray | None,
                 n_keys: int) -> tuple[np.ndarray, np.ndarray]:
        """Per shared key: whether it counts now (`counted_keys`), and the keys of the last
        look whose answer changed (a gated key's suspicion)."""
        was = len(self.counted)
        sus = np.zeros(n_keys, bool)
        if suspicious is not None:
            sus[: min(n_keys, len(suspicious))] = suspicious[:n_keys]
        counted = np.empty(n_keys, bool)
        counted[:was] = self.counted
        counted[was:] = counted_keys(state.sid_link[was:n_keys], sus[was:])
        # A gated key counts exactly when it is suspicious; the others never change.
        differ = np.flatnonzero(sus[:was] != self.counted)
        flipped = differ[_GATED_LINK[state.sid_link[differ]]]
        counted[flipped] = sus[flipped]
        return counted, flipped

    def _fold(self, rows: np.ndarray, state: DetectorState) -> None:
        """The largest size so far of each row's account and column, with these rows in."""
        if len(rows):
            cell = rows[:, PAIR_ACCOUNT] * len(KEY_EVIDENCE) + _COLUMN[rows[:, PAIR_KIND]]
            sizes = state.key_accounts[rows[:, PAIR_CODE]].astype(np.float64)
            np.maximum.at(self.k.reshape(-1), cell, sizes)


def rarity(state: DetectorState, feats: dict[str, np.ndarray], cfg: DetectConfig,
           shares: np.ndarray, k: np.ndarray,
           tails: tuple[KeptTail, KeptTail] | None = None) -> Rarity:
    """The evidence of every account, weighed against the log's established accounts.

    `shares` (per account and `KEY_EVIDENCE`): shares a key of that kind with another
    account (suspicious or not); `k`: the accounts on its largest key of each kind that
    counts (`key_sizes`); `tails`: the empirical tails of the share columns kept since the
    last look (computed afresh when None).
    """
    rc = cfg.evidence.rarity
    m = state.size
    if not m:
        return Rarity.none(0)
    age_days = (state.first_ts[:m] - state.created_us[:m]) / DAY_US
    self_serve = ~state.enterprise[:m]
    established = np.nan_to_num(age_days, nan=-1.0) >= rc.established_days
    n = feats["events"]
    enough = n >= rc.min_events
    null = established & self_serve
    n_null = int(np.count_nonzero(null))

    content = state.counters["distill"][:m] / np.maximum(n, 1.0) / 100.0
    stat = np.column_stack([k, feats["elicitation"], content])
    p = np.ones((m, len(EVIDENCE)))
    for e in range(len(KEY_EVIDENCE)):
        first = rc.card_min_accounts if e == _CARD else 2
        rho = share_rate(int(np.count_nonzero(shares[:m, e] & null)), n_null)
        p[:, e] = geometric_tail(rho, k[:, e], first)
    share_null = null & enough
    if np.count_nonzero(share_null) >= rc.min_null_accounts:
        for i, col in enumerate(_SHARE_COLUMNS):
            if tails is None:
                p[:, col] = np.where(enough, empirical_tail(stat[share_null, col],
                                                            stat[:, col]), 1.0)
            else:
                p[:, col] = tails[i].update(stat[:, col], share_null, enough)
    if n_null < rc.min_null_accounts:
        p[:, : len(KEY_EVIDENCE)] = 1.0  # too few established accounts to say what is rare
    p[~self_serve] = 1.0
    _gate_on_own_asks(p, stat, rc.key_min_share)
    combined = _combined(p)
    # A key is known from the first request; the shares are 1 below `min_events` anyway.
    flag = combined <= rc.max_p
    return Rarity(stat, p, combined, flag, n_null)


def _combined(p: np.ndarray) -> np.ndarray:
    """`cauchy_combination` of each account's evidence that counts: a gated kind only where
    its key is suspicious (p < 1; elsewhere it is left out: whether a key is suspicious is a
    gate, not an observation of p = 1), every other kind always.

    Column by column: most p-values are 1 (their term is one number), so only those under 1
    take a tangent. The terms are added in column order, as `cauchy_combination`'s row sum
    adds them, so the answer is the same to the last bit."""
    m = len(p)
    total, count = np.zeros(m), np.zeros(m, np.int64)
    for e in range(len(EVIDENCE)):
        col = p[:, e]
        some = np.flatnonzero(col < 1.0)
        if e < len(KEY_EVIDENCE) and _GATED[e]:
            total[some] += cauchy_terms(col[some])
            count[some] += 1
        else:
            terms = np.full(m, _TERM_AT_ONE)
            terms[some] = cauchy_terms(col[some])
            total += terms
            count += 1
    out: np.ndarray = np.arctan2(1.0, total / np.maximum(count, 1)) / np.pi
    return out


def _gate_on_own_asks(p: np.ndarray, stat: np.ndarray, min_share: float) -> None:
    """Leave the gated keys (e-mail domain, sign-up hour, address) out, in place, as if shared
    with nobody, for every account they do not count against (`_own_asks.weak_key_counts`:
    elicitation share and mean P(distill) both under `min_share`). Cards are not gated."""
    gated = np.flatnonzero(_GATED)
    calm = ~weak_key_counts(stat[:, list(_SHARE_COLUMNS)].max(axis=1), min_share)
    hit = np.flatnonzero(calm & (p[:, gated] < 1.0).any(axis=1))
    p[np.ix_(hit, gated)] = 1.0
    stat[np.ix_(hit, gated)] = 1.0


class RarityTracker:
    """`rarity` looked at every `rarity.every_minutes` of log time (see `_cadence`).

    Keeps, per account and kind, whether it shares a key of that kind with another account,
    from the shared pairs appended since the last look (they are only ever appended), the
    key sizes (`KeySizes`) and the accounts sorted by each share (`KeptTail`).
    """

    def __init__(self) -> None:
        self._cadence: Cadence[Rarity] = Cadence()
        self._shares = np.zeros((0, len(KEY_EVIDENCE)), bool)
        self._seen = 0
        self._sizes = KeySizes()
        self._tails = (KeptTail(), KeptTail())

    def __setstate__(self, saved: dict[str, object]) -> None:
        # A checkpoint written without the key sizes or the tails: the next look computes
        # them afresh.
        self.__dict__.update(saved)
        if "_sizes" not in saved:
            self._sizes = KeySizes()
        if "_tails" not in saved:
            self._tails = (KeptTail(), KeptTail())

    def update(self, state: DetectorState, feats: dict[str, np.ndarray], cfg: DetectConfig,
               suspicious: np.ndarray | None = None,
               by_key: PairIndex | None = None) -> Rarity:
        """The answer as of now: a fresh look, or the last one grown to the accounts seen since.
        Without the pair index the key sizes are computed from all the pairs."""
        last = self._cadence.reuse(state.now_us, cfg.evidence.rarity.every_minutes)
        if last is not None:
            return last.grown(state.size)
        if by_key is not None:
            k = self._sizes.update(state, suspicious, by_key)
        else:
            self._sizes = KeySizes()
            k = key_sizes(state, suspicious, by_key)
        return self._cadence.keep(rarity(state, feats, cfg, self._shared(state), k,
                                         self._tails))

    def _shared(self, state: DetectorState) -> np.ndarray:
        m = state.size
        if len(self._shares) < m:
            grown = np.zeros((max(m, 2 * len(self._shares)), len(KEY_EVIDENCE)), bool)
            grown[: len(self._shares)] = self._shares
            self._shares = grown
        pairs = state.shared_pairs()
        new = pairs[self._seen:]
        self._seen = len(pairs)
        for e, kind in enumerate(_KEY_KIND.tolist()):
            self._shares[new[new[:, PAIR_KIND] == kind, PAIR_ACCOUNT], e] = True
        return self._shares
