"""Post-hoc lexical watermark for text we did not generate (CATER-style).

The text is read as whitespace-separated chunks. A word that belongs to a
synonym pair (`_synonyms.PAIRS`), written in lower case or capitalised, outside
code fences, inline code, URLs and hyphenated or apostrophised compounds, is
an *occurrence*. Its context is the previous eligible word (after marking) and
its pair; the key decides, from that context only, which member of the pair the
text should use. About half the contexts carry the global key, the other half
one symbol of the account's code word (the same code as the token layer).

Detection reads the same occurrences from text alone. Under H0 (text written
without the key) each distinct (previous word, pair) context matches the keyed
choice with probability exactly 1/2, so the p-value is a binomial tail.
Synonym substitution is meaning-preserving, low capacity (a few occurrences per
hundred words) and removable by an adversary who paraphrases: it is evidence
that accumulates over a harvested *dataset*, not over one answer.

Streaming: `stream().feed(delta)` emits text up to the last whitespace seen
(every chunk before it is complete) and holds back the rest; `finish()` flushes.
The concatenated stream output equals `apply(text)` for any split of the text.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from distillguard.watermark import _seeding as S
from distillguard.watermark._detect import LN10, AccountMatch, Detection, combine_positions
from distillguard.watermark._scheme import LayerKeys
from distillguard.watermark._synonyms import GROUP, PAIRS
from distillguard.watermark._version import KeyVersion

if TYPE_CHECKING:  # only names an argument's type: at run time _keys imports this module
    from distillguard.watermark._keys import WatermarkKey

_WORD = re.compile(r"[A-Za-z]+")
_CHUNK = re.compile(r"\S+|\s+")
_LAYER_SALT = np.uint64(0x2545F4914F6CDD1D)
_CHOICE_TOKEN = S.hashes_of_tokens(np.zeros(1, dtype=np.int64))
_BLOCKERS = set("-'’_/\\0123456789@")

# decide(prev_word, group, word) -> replacement member, or None to keep the word
Decide = Callable[[str, int, str], str | None]


def context_id(prev: str, group: int) -> np.uint64:
    """Unkeyed identity of an occurrence's context."""
    digest = hashlib.blake2b(f"{prev}\x00{group}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


@dataclass
class _ScanState:
    prev: str = ""
    in_fence: bool = False
    in_inline: bool = False


def _rewrite_part(part: str, state: _ScanState, decide: Decide) -> str:
    """Words of a chunk piece outside code: decide each eligible occurrence."""
    out: list[str] = []
    last = 0
    for m in _WORD.finditer(part):
        word = m.group(0)
        before = part[m.start() - 1] if m.start() > 0 else ""
        after = part[m.end()] if m.end() < len(part) else ""
        new = word
        lower = word.lower()
        cased = word.islower() or (word[0].isupper() and word[1:].islower())
        if lower in GROUP and cased and before not in _BLOCKERS and after not in _BLOCKERS:
            choice = decide(state.prev, GROUP[lower], lower)
            if choice is not None:
                new = choice if word.islower() else choice.capitalize()
        out.append(part[last : m.start()])
        out.append(new)
        last = m.end()
        state.prev = new.lower()
    out.append(part[last:])
    return "".join(out)


def _rewrite_chunk(chunk: str, state: _ScanState, decide: Decide) -> str:
    if chunk.isspace():
        return chunk
    if chunk.startswith("```"):
        state.in_fence = not state.in_fence
        return chunk
    if state.in_fence:
        return chunk
    if "://" in chunk or chunk.lower().startswith("www.") or "@" in chunk:
        return chunk
    pieces = chunk.split("`")
    out = []
    for i, piece in enumerate(pieces):
        if i > 0:
            state.in_inline = not state.in_inline
        out.append(piece if state.in_inline else _rewrite_part(piece, state, decide))
    return "`".join(out)


def scan(text: str, state: _ScanState, decide: Decide) -> str:
    """Rewrite complete chunks of `text` (the caller guarantees they are complete)."""
    return "".join(_rewrite_chunk(c, state, decide) for c in _CHUNK.findall(text))


class _Chooser:
    """The keyed choice for one key version and (optionally) one account."""

    def __init__(self, version: KeyVersion, account_id: str | None) -> None:
        cfg = version.config
        self.keys = LayerKeys.of(version, prefix="lexical-")
        self.code = (
            S.account_code(
                version.secret, version.version, account_id, cfg.account_length, cfg.account_alphabet
            )
            if account_id is not None
            else None
        )

    def __call__(self, prev: str, group: int, word: str) -> str | None:
        ctx = np.array([context_id(prev, group)], dtype=np.uint64)
        if is_global(self.keys, ctx)[0]:
            member = int(global_bits(self.keys, ctx)[0])
        elif self.code is not None:
            pos = int(self.keys.positions(ctx)[0])
            member = int(symbol_bits(self.keys, ctx, np.array([self.code[pos]]))[0])
        else:
            return None
        return PAIRS[group][member]


def is_global(keys: LayerKeys, ctx: S.U64) -> np.ndarray:  # type: ignore[type-arg]
    return S.unit(S.mix64(S.keyed_context(keys.global_key, ctx) ^ _LAYER_SALT)) < 0.5


def global_bits(keys: LayerKeys, ctx: S.U64) -> np.ndarray:  # type: ignore[type-arg]
    return S.unit(S.values(S.keyed_context(keys.global_key, ctx), _CHOICE_TOKEN)) >= 0.5


def symbol_bits(keys: LayerKeys, ctx: S.U64, symbols: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    """Member index chosen under each given symbol at each context's position."""
    pos = keys.positions(ctx)
    k = keys.symbol_keys[pos[:, None] if symbols.ndim == 2 else pos, symbols]
    c = ctx[:, None] if symbols.ndim == 2 else ctx
    return S.unit(S.values(S.keyed_context(k, c), _CHOICE_TOKEN)) >= 0.5


class TextStream:
    """Streaming form of `TextWatermarker.apply`: `feed` deltas, then `finish`."""

    def __init__(self, decide: Decide) -> None:
        self._decide = decide
        self._state = _ScanState()
        self._buffer = ""

    def feed(self, delta: str) -> str:
        """Marked text for every complete chunk so far; the unfinished tail is held back."""
        self._buffer += delta
        cut = max(self._buffer.rfind(c) for c in (" ", "\n", "\t", "\r"))
        if cut < 0:
            return ""
        ready, self._buffer = self._buffer[: cut + 1], self._buffer[cut + 1 :]
        return scan(ready, self._state, self._decide)

    def finish(self) -> str:
        """The marked remainder; the stream is then empty."""
        ready, self._buffer = self._buffer, ""
        return scan(ready, self._state, self._decide)


class TextWatermarker:
    """Marks text post hoc for the provider and one account (`key.text_watermarker(id)`)."""

    def __init__(self, version: KeyVersion, account_id: str | None = None) -> None:
        self.version = version
        self.account_id = account_id
        self._decide = _Chooser(version, account_id)

    def apply(self, text: str) -> str:
        stream = self.stream()
        return stream.feed(text) + stream.finish()

    def stream(self) -> TextStream:
        return TextStream(self._decide)


@dataclass
class _Occurrences:
    ctx: S.U64
    member: np.ndarray  # type: ignore[type-arg]
    seen: int
    dropped_repeats: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def occurrences(texts: Sequence[str]) -> _Occurrences:
    """Each distinct (previous word, pair) context of the texts, with the member used."""
    found: dict[int, int] = {}
    seen = 0
    for text in texts:
        state = _ScanState()

        def record(prev: str, group: int, word: str) -> str | None:
            nonlocal seen
            seen += 1
            cid = int(context_id(prev, group))
            found.setdefault(cid, PAIRS[group].index(word))
            return None

        scan(text, state, record)
    ctx = np.fromiter(found.keys(), dtype=np.uint64, count=len(found))
    member = np.fromiter(found.values(), dtype=np.int64, count=len(found))
    return _Occurrences(ctx=ctx, member=member, seen=seen, dropped_repeats=seen - len(found))


def detect_lexical(
    key: WatermarkKey,
    texts: Sequence[str],
    *,
    candidates: Sequence[str] | None = None,
    alpha: float = 1e-6,
    report_alpha: float = 0.01,
    max_report: int = 50,
) -> Detection:
    """Lexical-layer detection from text alone, over every key version."""
    occ = occurrences(texts)
    best: Detection | None = None
    for version in key.versions:
        det = _detect_version(version, occ, candidates, alpha, report_alpha, max_report)
        if best is None or det.log10_p < best.log10_p:
            best = det
    assert best is not None
    n_versions = len(key.versions)
    best.log10_p = min(0.0, best.log10_p + math.log10(n_versions))
    best.p_value = 10.0**best.log10_p
    best.versions_tried = n_versions
    return best


def _detect_version(
    version: KeyVersion,
    occ: _Occurrences,
    candidates: Sequence[str] | None,
    alpha: float,
    report_alpha: float,
    max_report: int,
) -> Detection:
    cfg = version.config
    keys = LayerKeys.of(version, prefix="lexical-")
    glob = is_global(keys, occ.ctx) if occ.ctx.size else np.zeros(0, bool)

    def global_test(k: LayerKeys) -> tuple[float, int, int]:
        g = is_global(k, occ.ctx) if occ.ctx.size else np.zeros(0, bool)
        n = int(g.sum())
        hits = int((global_bits(k, occ.ctx[g]) == occ.member[g].astype(bool)).sum()) if n else 0
        return float(stats.binom.logsf(hits - 1, n, 0.5)) if n else 0.0, hits, n

    log_p, hits, n = global_test(keys)
    controls = [
        float(math.exp(global_test(LayerKeys.of(version, control=c, prefix="lexical-"))[0]))
        for c in range(cfg.controls)
    ]
    det = Detection(
        scheme="lexical",
        layer="global",
        key_version=version.version,
        versions_tried=1,
        tokens_seen=occ.seen,
        scored_tuples=n,
        dropped_repeats=occ.dropped_repeats,
        dropped_prompt=0,
        statistic=float(hits),
        expected=n / 2,
        p_value=float(math.exp(log_p)),
        log10_p=log_p / LN10,
        min_scored=min(cfg.min_scored, 10),
        controls=controls,
        alpha=alpha,
    )
    if candidates is not None:
        acc = ~glob
        ctx, member = occ.ctx[acc], occ.member[acc].astype(bool)
        L, q = cfg.account_length, cfg.account_alphabet
        pos = keys.positions(ctx) if ctx.size else np.zeros(0, np.int64)
        counts = np.bincount(pos, minlength=L)
        table = np.zeros((L, q))
        if ctx.size:
            bits = symbol_bits(keys, ctx, np.broadcast_to(np.arange(q), (ctx.size, q)))
            match = bits == member[:, None]
            for i in range(L):
                hits_i = match[pos == i].sum(axis=0)
                if counts[i]:
                    table[i] = stats.binom.logsf(hits_i - 1, counts[i], 0.5)
        det.decoded_code = [int(v) for v in table.argmin(axis=1)]
        det.position_log10_p = [float(table[i].min() / LN10) for i in range(L)]
        det.candidates = len(candidates)
        if candidates:
            codes = np.asarray(
                [S.account_code(version.secret, version.version, a, L, q) for a in candidates],
                dtype=np.int64,
            )
            adjusted = combine_positions(table, codes, len(candidates))
            for j in np.argsort(adjusted, kind="stable")[:max_report]:
                p = float(math.exp(adjusted[j]))
                if p > report_alpha:
                    break
                det.accounts.append(
                    AccountMatch(str(candidates[j]), p, float(adjusted[j] / LN10), p <= alpha)
                )
    return det
