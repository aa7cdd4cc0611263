"""Lexical (post-hoc) watermark: capacity, detection, attribution and fluency, old lexicon vs new.

Stand-in answers: English texts of >= 150 words from the shipped corpora (arena_hard,
sharegpt_1k, wildchat_1k). Both lexicons run in the same process on the same texts and
fixed keys: "old" marks with the first table only (`SYNONYM_PAIRS`), "new" with every group.

Prints per lexicon:
- distinct scored contexts per 100 words, share of words changed (word-level diff);
- fluency: perplexity ratio marked / original under a word bigram model (add-k) trained on
  held-out corpus texts (not the ones marked);
- detection: median p-value and share of samples at p <= 1e-6 for samples of about W words;
- attribution at about 10,000 words: share of samples whose account is named at p <= 1e-3
  among N_CANDIDATES ids, and that p scaled (Bonferroni) to 1 M candidates.

Usage: nice -n 10 python benchmarks/bench_lexical.py [--texts-per-corpus 400]
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

from distillguard.localmodel import read_corpus_texts
from distillguard.watermark import SYNONYM_PAIRS, TextWatermarker, detect_lexical
from distillguard.watermark._lexical import occurrences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from watermark.keys import fixed_key  # noqa: E402

CORPORA = ["arena_hard", "sharegpt_1k", "wildchat_1k"]
MIN_WORDS = 150
ASCII_SHARE = 0.97
DEDUP_CHARS = 80
SIZES = (500, 1000, 2000, 5000)
ATTRIBUTION_WORDS = 10_000
N_CANDIDATES = 20_000
DETECT_ALPHA = 1e-6
ATTRIBUTE_ALPHA = 1e-3
BIGRAM_K = 0.1
_TOKEN = re.compile(r"[A-Za-z']+|[0-9]+|[^\sA-Za-z0-9]")


def english(texts: list[str]) -> list[str]:
    """English texts of >= MIN_WORDS words, one per opening (the corpora repeat prompt templates)."""
    seen: set[str] = set()
    out = []
    for t in texts:
        head = t[:DEDUP_CHARS]
        if len(t.split()) >= MIN_WORDS and sum(c.isascii() for c in t) > ASCII_SHARE * len(t) and head not in seen:
            seen.add(head)
            out.append(t)
    return out


def bundles(texts: list[str], words: int) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    n = 0
    for t in texts:
        cur.append(t)
        n += len(t.split())
        if n >= words:
            out.append(cur)
            cur, n = [], 0
    return out


class Bigram:
    """Word bigram model with add-k smoothing: a cheap, key-independent fluency yardstick."""

    def __init__(self, texts: list[str]) -> None:
        self.uni: Counter[str] = Counter()
        self.bi: Counter[tuple[str, str]] = Counter()
        for t in texts:
            toks = ["<s>", *(w.lower() for w in _TOKEN.findall(t))]
            self.uni.update(toks)
            self.bi.update(zip(toks, toks[1:], strict=False))
        self.v = len(self.uni) + 1

    def log_prob(self, text: str) -> tuple[float, int]:
        toks = ["<s>", *(w.lower() for w in _TOKEN.findall(text))]
        lp = sum(
            math.log((self.bi[(a, b)] + BIGRAM_K) / (self.uni[a] + BIGRAM_K * self.v))
            for a, b in zip(toks, toks[1:], strict=False)
        )
        return lp, len(toks) - 1


def changed_share(orig: list[str], marked: list[str]) -> float:
    changed = total = 0
    for a, b in zip(orig, marked, strict=True):
        wa, wb = a.split(), b.split()
        sm = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
        changed += len(wa) - sum(m.size for m in sm.get_matching_blocks())
        total += len(wa)
    return changed / total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts-per-corpus", type=int, default=400)
    args = ap.parse_args()
    n = args.texts_per_corpus
    texts = english(read_corpus_texts(CORPORA, n))
    held_out = read_corpus_texts(CORPORA, 1000)[3 * n :] if n < 1000 else []
    lm = Bigram(held_out or read_corpus_texts(["alpaca_5k"], 5000))
    words = sum(len(t.split()) for t in texts)
    print(f"{len(texts)} English texts, {words} words; bigram LM on {len(held_out)} held-out texts")
    key = fixed_key(1)
    candidates = [f"acct-{i}" for i in range(N_CANDIDATES)]
    base_lp = sum(lm.log_prob(t)[0] for t in texts)
    base_n = sum(lm.log_prob(t)[1] for t in texts)
    for name, groups in (("old", len(SYNONYM_PAIRS)), ("new", None)):
        marked = [TextWatermarker(key.versions[0], "acct-7", groups).apply(t) for t in texts]
        occ = occurrences(marked, groups)
        lp = sum(lm.log_prob(t)[0] for t in marked)
        n_tok = sum(lm.log_prob(t)[1] for t in marked)
        ppl_ratio = math.exp(-lp / n_tok) / math.exp(-base_lp / base_n)
        print(
            f"[{name}] contexts/100 words {100 * occ.ctx.size / words:.2f}; words changed "
            f"{100 * changed_share(texts, marked):.2f} %; bigram perplexity ratio {ppl_ratio:.4f}"
        )
        for size in SIZES:
            ps = [detect_lexical(key, b, groups=groups).p_value for b in bundles(marked, size)]
            hit = sum(p <= DETECT_ALPHA for p in ps) / len(ps)
            print(f"  ~{size} words: {len(ps)} samples, median p {statistics.median(ps):.1e}, p<=1e-6 {hit:.0%}")  # noqa: E501
        ok = 0
        scaled = []
        scored = []
        samples = bundles(marked, ATTRIBUTION_WORDS)
        for b in samples:
            det = detect_lexical(
                key, b, candidates=[*candidates, "acct-7"], report_alpha=1.0, max_report=3, groups=groups
            )
            p = next((m.p_value for m in det.accounts if m.account_id == "acct-7"), 1.0)
            ok += p <= ATTRIBUTE_ALPHA
            scaled.append(min(1.0, p * 1e6 / (N_CANDIDATES + 1)))
            scored.append(occurrences(b, groups).ctx.size)
        print(
            f"  ~{ATTRIBUTION_WORDS} words: {len(samples)} samples, named at p<=1e-3 among "
            f"{N_CANDIDATES + 1}: {ok}/{len(samples)}; at 1 M: {sum(s <= ATTRIBUTE_ALPHA for s in scaled)}/{len(samples)}"
        )
        print("    (distinct contexts, p scaled to 1 M):", ", ".join(f"({c}, {s:.0e})" for c, s in zip(scored, scaled, strict=True)))
    sample: list[tuple[str, str]] = []
    for t in texts[:40]:
        wa, wb = t.split(), TextWatermarker(key.versions[0], "acct-7").apply(t).split()
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
            if op != "equal":
                sample.append((" ".join(wa[max(0, i1 - 2) : i2 + 1]), " ".join(wb[max(0, j1 - 2) : j2 + 1])))
    for a, b in sample[:15]:
        print(f"  {a!r} -> {b!r}")


if __name__ == "__main__":
    main()
