"""Detection with exact p-values, each (context, token) tuple scored once.

Null hypothesis H0: the text was produced without knowledge of the key. Under
H0 and for a pseudo-random function of the key, each *distinct* scored tuple is
green with probability gamma (kgw), or carries a uniform r so that -log(1 - r)
is Exp(1) (gumbel), independently of the others. Repeated tuples are not
independent, so every tuple counts once over the whole corpus, and tuples that
also occur in the prompt (copied text) are dropped. The tails are then exact:
binomial for kgw, Gamma(n, 1) for gumbel, computed in log space by scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from distillguard.watermark import _seeding as S
from distillguard.watermark._scheme import LayerKeys, windows_of
from distillguard.watermark._tails import weighted_binom_logsf
from distillguard.watermark._version import KeyVersion

if TYPE_CHECKING:  # only names an argument's type: at run time _keys imports this module
    from distillguard.watermark._keys import WatermarkKey

I64 = npt.NDArray[np.int64]
LN10 = math.log(10.0)


@dataclass(frozen=True)
class AccountMatch:
    """One candidate account and its Bonferroni-adjusted p-value over all candidates."""

    account_id: str
    p_value: float
    log10_p: float
    attributed: bool


@dataclass
class Detection:
    """What was scored, against which key, with which controls, and the p-value."""

    scheme: str
    layer: str
    key_version: int
    versions_tried: int
    tokens_seen: int
    scored_tuples: int
    dropped_repeats: int
    dropped_prompt: int
    statistic: float
    expected: float
    p_value: float
    log10_p: float
    min_scored: int
    controls: list[float] = field(default_factory=list)
    accounts: list[AccountMatch] = field(default_factory=list)
    candidates: int = 0
    decoded_code: list[int] = field(default_factory=list)
    position_log10_p: list[float] = field(default_factory=list)
    alpha: float = 1e-6
    weighted: bool = False  # statistic: the weighted count of green tuples (`ScoredTuples.weights`)

    @property
    def enough(self) -> bool:
        return self.scored_tuples >= self.min_scored

    @property
    def verdict(self) -> str:
        if not self.enough:
            return (
                f"not enough scored tokens: {self.scored_tuples} unique tuples, "
                f"need at least {self.min_scored} to decide"
            )
        if self.p_value <= self.alpha:
            return f"watermarked (p = {self.p_value:.3g} <= {self.alpha:g})"
        return f"no evidence of the watermark (p = {self.p_value:.3g})"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "enough": self.enough,
            "p_value": self.p_value,
            "log10_p": self.log10_p,
            "scored_tuples": self.scored_tuples,
            "scheme": self.scheme,
            "layer": self.layer,
            "key_version": self.key_version,
            "versions_tried": self.versions_tried,
            "tokens_seen": self.tokens_seen,
            "dropped_repeats": self.dropped_repeats,
            "dropped_prompt": self.dropped_prompt,
            "statistic": self.statistic,
            "weighted": self.weighted,
            "expected_under_h0": self.expected,
            "controls": [{"key": f"control-{i}", "p_value": p} for i, p in enumerate(self.controls)],
            "candidates": self.candidates,
            "accounts": [
                {
                    "account_id": a.account_id,
                    "p_value": a.p_value,
                    "log10_p": a.log10_p,
                    "attributed": a.attributed,
                }
                for a in self.accounts
            ],
            "decoded_code": self.decoded_code,
            "position_log10_p": self.position_log10_p,
        }


@dataclass(frozen=True)
class ScoredTuples:
    """The unique, prompt-free tuples of a corpus under one context width.

    `weights` (optional, integers >= 1, chosen without the key): kgw then scores the
    weighted count of green tuples, whose exact tail is `weighted_binom_logsf`; the
    Gumbel score ignores them.
    """

    ctx_ids: S.U64
    windows: I64
    tokens: I64
    tokens_seen: int
    dropped_repeats: int
    dropped_prompt: int
    weights: I64 | None = None


def flatten(seqs: Sequence[Sequence[int]]) -> tuple[I64, I64]:
    """(concatenated tokens, flat index where each sequence starts)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = (
        np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
        if len(seqs) and lengths.sum()
        else np.zeros(0, np.int64)
    )
    return flat, starts


def first_of_each(ids: S.U64) -> I64:
    """Indices of the first occurrence of each distinct id, in order of occurrence."""
    _, first = np.unique(ids, return_index=True)
    return np.sort(first).astype(np.int64)


def tuple_ids_of(seqs: Sequence[Sequence[int]], h: int) -> S.U64:
    """Identity of every (h-window, token) tuple of `seqs` (repeats included)."""
    flat, starts = flatten(seqs)
    windows, idx = windows_of(flat, starts, h)
    return S.tuple_ids(S.context_ids(windows), flat[idx])


def unique_tuples(
    ctx_ids: S.U64,
    windows: I64,
    tokens: I64,
    *,
    tokens_seen: int,
    drop: S.U64 | None = None,
    dropped_before: int = 0,
    weights: I64 | None = None,
) -> ScoredTuples:
    """Each distinct (context, token) tuple once, minus those whose id is in `drop`.

    `drop` holds the tuple ids of the prompts (`tuple_ids_of`): text copied from the
    prompt says nothing about the key. `dropped_before` counts tuples the caller
    already removed as repeats.
    """
    tid = S.tuple_ids(ctx_ids, tokens)
    keep = first_of_each(tid)
    dropped_repeats = int(tid.size - keep.size) + dropped_before
    dropped_prompt = 0
    if drop is not None and drop.size:
        inside = np.isin(tid[keep], drop)
        dropped_prompt = int(inside.sum())
        keep = keep[~inside]
    return ScoredTuples(
        ctx_ids=ctx_ids[keep],
        windows=windows[keep],
        tokens=tokens[keep],
        tokens_seen=tokens_seen,
        dropped_repeats=dropped_repeats,
        dropped_prompt=dropped_prompt,
        weights=None if weights is None else weights[keep],
    )


def collect_tuples(
    seqs: Sequence[Sequence[int]], h: int, prompts: Sequence[Sequence[int]] | None = None
) -> ScoredTuples:
    """Every (h-window, token) tuple of `seqs`, deduplicated, minus those in `prompts`."""
    flat, starts = flatten(seqs)
    windows, idx = windows_of(flat, starts, h)
    return unique_tuples(
        S.context_ids(windows),
        windows,
        flat[idx],
        tokens_seen=int(flat.size),
        drop=tuple_ids_of(prompts, h) if prompts else None,
    )


def _global_log_p(
    keys: LayerKeys, t: ScoredTuples, code: I64 | None = None
) -> tuple[float, float, float, int]:
    """(log p, statistic, expected under H0, tuples scored) of the global layer.

    With `code` (kgw only: the code word of an account known to have been served the
    text), each tuple is also scored under that account's layer, whose green lists are
    independent of the global ones under H0: one binomial over both sets of trials.
    With `t.weights` (kgw), the statistic is the weighted green count, its tail exact
    (`weighted_binom_logsf`); the account layer's trials carry the same weights.
    """
    n = t.tokens.size
    cfg = keys.config
    if n == 0:
        return 0.0, 0.0, 0.0, 0
    th = S.hashes_of_tokens(t.tokens)
    vals = keys.global_values(t.windows, t.ctx_ids, t.tokens, th)
    # Distinct PRF inputs give independent values; with self-hash, different tuples can
    # share one input (the anchor is the token itself), so count each value once.
    if cfg.self_hash:
        vals, first = np.unique(vals, return_index=True)
    else:
        first = np.arange(n)
    u = S.unit(vals)
    n = u.size
    if cfg.scheme == "kgw" and t.weights is not None:
        w = t.weights[first]
        counts = np.bincount(w, minlength=int(t.weights.max()) + 1)
        stat = int((w * (u < cfg.gamma)).sum())
        if code is not None:
            acc = keys.account_values(t.ctx_ids, code[keys.positions(t.ctx_ids)], th)
            stat += int((t.weights * (S.unit(acc) < cfg.gamma)).sum())
            counts = counts + np.bincount(t.weights, minlength=counts.size)
        expected = cfg.gamma * float((counts * np.arange(counts.size)).sum())
        return weighted_binom_logsf(counts, stat, cfg.gamma), float(stat), expected, n
    if cfg.scheme == "kgw":
        green, trials = int((u < cfg.gamma).sum()), n
        if code is not None:
            acc = keys.account_values(t.ctx_ids, code[keys.positions(t.ctx_ids)], th)
            green, trials = green + int((S.unit(acc) < cfg.gamma).sum()), trials + t.tokens.size
        log_p = float(stats.binom.logsf(green - 1, trials, cfg.gamma))
        return log_p, float(green), trials * cfg.gamma, n
    score = float(-np.log1p(-u).sum())
    return float(stats.gamma.logsf(score, n)), score, float(n), n


def _account_table(keys: LayerKeys, t: ScoredTuples, chunk: int = 65536) -> tuple[I64, I64]:
    """(n_i per position, green counts G[i, v]) of the account layer."""
    cfg = keys.config
    L, q = cfg.account_length, cfg.account_alphabet
    counts = np.zeros(L, dtype=np.int64)
    green = np.zeros((L, q), dtype=np.int64)
    for lo in range(0, t.tokens.size, chunk):
        ctx = t.ctx_ids[lo : lo + chunk]
        th = S.hashes_of_tokens(t.tokens[lo : lo + chunk])
        pos = keys.positions(ctx)
        g = S.unit(keys.account_values_all_symbols(ctx, th)) < cfg.gamma  # (n, q)
        counts += np.bincount(pos, minlength=L)
        for i in range(L):
            green[i] += g[pos == i].sum(axis=0)
    return counts, green


ACCOUNT_COMBINE = 3


def combine_positions(table: npt.NDArray[np.float64], codes: I64, n_candidates: int) -> npt.NDArray[np.float64]:
    """Natural-log p-value of each candidate, Bonferroni-adjusted over `n_candidates`.

    `table[i, v]` is the log p-value of position i under symbol v. A candidate's
    evidence is Fisher's combination of its k = `ACCOUNT_COMBINE` *weakest*
    positions. The sum of the k weakest -log p is at most the sum over any k
    positions, so whenever k of the candidate's positions are unmarked the test is
    valid (conservative): an innocent account stays protected while it shares up
    to L - k symbols with real harvesters. Sharing more happens with probability
    about C(L, L-k+1) / q**(L-k+1) per (account, harvester): 28 / 512**6 = 1.6e-15
    for L=8, q=512, k=3.
    """
    L = table.shape[0]
    k = min(ACCOUNT_COMBINE, L)
    cand = table[np.arange(L)[None, :], codes]  # (N, L) log p, <= 0
    weakest = np.sort(cand, axis=1)[:, L - k :]  # the k largest log p
    fisher = stats.chi2.logsf(-2.0 * weakest.sum(axis=1), 2 * k)
    return np.asarray(np.minimum(0.0, fisher + math.log(max(n_candidates, 1))), dtype=np.float64)


def _attribute(
    version: KeyVersion,
    keys: LayerKeys,
    t: ScoredTuples,
    candidates: Sequence[str],
    alpha: float,
    report_alpha: float,
    max_report: int,
) -> tuple[list[AccountMatch], list[int], list[float]]:
    """Candidates whose code word is marked: `combine_positions`, Bonferroni over N."""
    cfg = keys.config
    counts, green = _account_table(keys, t)
    with np.errstate(divide="ignore"):
        table = stats.binom.logsf(green - 1, counts[:, None], cfg.gamma)  # (L, q) log p
    table = np.where(counts[:, None] > 0, table, 0.0)
    decoded = [int(v) for v in table.argmin(axis=1)]
    pos_log10 = [float(table[i].min() / LN10) for i in range(cfg.account_length)]
    if not candidates:
        return [], decoded, pos_log10
    codes = np.asarray(
        [
            S.account_code(version.secret, version.version, a, cfg.account_length, cfg.account_alphabet)
            for a in candidates
        ],
        dtype=np.int64,
    )
    adjusted = combine_positions(table, codes, len(candidates))
    order = np.argsort(adjusted, kind="stable")
    matches = []
    for j in order[:max_report]:
        p = float(math.exp(adjusted[j]))
        if p > report_alpha:
            break
        matches.append(
            AccountMatch(str(candidates[j]), p, float(adjusted[j] / LN10), bool(p <= alpha))
        )
    return matches, decoded, pos_log10


def detect_ids(
    key: WatermarkKey,
    seqs: Sequence[Sequence[int]],
    *,
    prompts: Sequence[Sequence[int]] | None = None,
    candidates: Sequence[str] | None = None,
    alpha: float = 1e-6,
    report_alpha: float = 0.01,
    max_report: int = 50,
    controls: bool = True,
) -> Detection:
    """Score token sequences against every version of `key`; the best version wins.

    The reported p-value is Bonferroni-adjusted over the versions tried. Controls are
    the same statistic under keys derived for the purpose (never used to mark text);
    under H0 they, and the real key, are uniform.
    """
    return detect_tuples(
        key,
        lambda h: collect_tuples(seqs, h, prompts),
        candidates=candidates,
        alpha=alpha,
        report_alpha=report_alpha,
        max_report=max_report,
        controls=controls,
    )


def detect_tuples(
    key: WatermarkKey,
    tuples_for: Callable[[int], ScoredTuples],
    *,
    candidates: Sequence[str] | None = None,
    alpha: float = 1e-6,
    report_alpha: float = 0.01,
    max_report: int = 50,
    controls: bool = True,
    served_account: str | None = None,
) -> Detection:
    """`detect_ids` over any source of tuples: `tuples_for(h)` gives those of context width h.

    `served_account`: an account known to have received the marked text (kgw keys with an
    account layer): its layer is scored beside the global one (`_global_log_p`).
    """
    results: list[tuple[float, KeyVersion, LayerKeys, ScoredTuples, float, float, int]] = []
    cache: dict[int, ScoredTuples] = {}
    codes: dict[int, I64 | None] = {}
    for version in key.versions:
        cfg = version.config
        codes[version.version] = (
            np.asarray(
                S.account_code(
                    version.secret, version.version, served_account, cfg.account_length, cfg.account_alphabet
                ),
                dtype=np.int64,
            )
            if served_account is not None and cfg.account_delta > 0 and cfg.scheme == "kgw"
            else None
        )
        h = cfg.context_width
        if h not in cache:
            cache[h] = tuples_for(h)
        t = cache[h]
        keys = LayerKeys.of(version)
        log_p, stat, expected, n = _global_log_p(keys, t, codes[version.version])
        results.append((log_p, version, keys, t, stat, expected, n))
    log_p, version, keys, t, stat, expected, n = min(results, key=lambda r: r[0])
    log_p = min(0.0, log_p + math.log(len(results)))
    cfg = version.config
    code = codes[version.version]
    control_ps = (
        [float(math.exp(_global_log_p(LayerKeys.of(version, c), t, code)[0])) for c in range(cfg.controls)]
        if controls
        else []
    )
    det = Detection(
        scheme=cfg.scheme,
        layer="global",
        key_version=version.version,
        versions_tried=len(results),
        tokens_seen=t.tokens_seen,
        scored_tuples=n,
        dropped_repeats=t.dropped_repeats + int(t.tokens.size - n),
        dropped_prompt=t.dropped_prompt,
        statistic=stat,
        expected=expected,
        p_value=float(math.exp(log_p)),
        log10_p=log_p / LN10,
        min_scored=cfg.min_scored,
        controls=control_ps,
        alpha=alpha,
        weighted=t.weights is not None and cfg.scheme == "kgw",
    )
    if candidates is not None and cfg.account_delta > 0 and t.tokens.size:
        best: tuple[list[AccountMatch], list[int], list[float]] | None = None
        for _, ver, kk, tt, _, _, _ in results:
            found = _attribute(ver, kk, tt, candidates, alpha, report_alpha, max_report)
            if best is None or (found[0] and (not best[0] or found[0][0].log10_p < best[0][0].log10_p)):
                best = found
        assert best is not None
        det.accounts, det.decoded_code, det.position_log10_p = best
        det.candidates = len(candidates)
    return det


class WatermarkDetector:
    """Detects the key's watermark in texts, through the tokenizer that generated them."""

    def __init__(self, key: WatermarkKey, tokenizer: Any) -> None:
        self.key = key
        self.tokenizer = tokenizer

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(x) for x in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def detect_texts(
        self,
        texts: Sequence[str],
        *,
        prompts: Sequence[str] | None = None,
        candidates: Sequence[str] | None = None,
        alpha: float = 1e-6,
    ) -> Detection:
        return detect_ids(
            self.key,
            self.encode(texts),
            prompts=self.encode(prompts) if prompts else None,
            candidates=candidates,
            alpha=alpha,
        )
