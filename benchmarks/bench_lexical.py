"""Lexical (post-hoc) watermark: capacity, detection, attribution and fluency, before vs after.

Stand-in answers: English texts of >= 150 words from the shipped corpora (arena_hard,
sharegpt_1k, wildchat_1k). Every configuration runs in the same process on the same texts and
fixed key: "before" = the first `LEXICON_BEFORE` lexicon groups and the apostrophe choice (the
lexical layer before the format choices and breame's spellings), "after" = every choice.

Per configuration, written to docs/benchmarks.md (`_docs.write_section`):
- distinct scored contexts per 100 words, share of words changed (word-level diff);
- fluency: perplexity ratio marked / original under a word bigram model (add-k) trained on
  held-out corpus texts (not the ones marked), and under the local model (`load_default_model`,
  token level, windows of its context length);
- detection: words needed to reach p <= 1e-6 (texts added one at a time, restarting after each
  hit: median and 90th percentile), median p and share at p <= 1e-6 for samples of about W words;
- attribution at about 10,000 words: p of the marking account among N_CANDIDATES ids, scaled
  (Bonferroni, linear in the count) to 1 M candidates: median, and share at p <= 1e-3.

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
from collections.abc import Collection
from pathlib import Path

from distillguard.localmodel import load_default_model, read_corpus_texts
from distillguard.watermark import TextWatermarker, detect_lexical
from distillguard.watermark._formats import APOSTROPHE
from distillguard.watermark._lexical import occurrences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import markdown_table, write_section  # noqa: E402

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
ACCOUNT = "acct-7"
LEXICON_BEFORE = 349  # lexicon groups before breame's spelling pairs were appended
# name -> (lexicon groups, format choices); None: all
CONFIGS: dict[str, tuple[int | None, Collection[int] | None]] = {
    "before": (LEXICON_BEFORE, (APOSTROPHE,)),
    "after": (None, None),
}
_TOKEN = re.compile(r"[A-Za-z']+|[0-9]+|[^\sA-Za-z0-9]")


def english(texts: list[str]) -> list[str]:
    """English texts of >= MIN_WORDS words, one per opening (the corpora repeat prompt templates)."""
    seen: set[str] = set()
    out = []
    for t in texts:
        head = t[:DEDUP_CHARS]
        if (
            len(t.split()) >= MIN_WORDS
            and sum(c.isascii() for c in t) > ASCII_SHARE * len(t)
            and head not in seen
        ):
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


class LocalLM:
    """Token-level log-likelihood under the local model, text cut into windows it can read."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.model, self.tok = load_default_model(progress=False)
        self.window = int(self.model.config.n_positions)

    def log_prob(self, text: str) -> tuple[float, int]:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        total, count = 0.0, 0
        with self.torch.inference_mode():
            for lo in range(0, max(len(ids) - 1, 0), self.window - 1):
                chunk = self.torch.tensor([ids[lo : lo + self.window]])
                if chunk.shape[1] < 2:
                    continue
                logp = self.torch.log_softmax(self.model(input_ids=chunk).logits[0, :-1], dim=-1)
                tgt = chunk[0, 1:]
                total += float(logp[self.torch.arange(tgt.numel()), tgt].sum())
                count += int(tgt.numel())
        return total, count


def perplexity_ratio(lm: Bigram | LocalLM, texts: list[str], marked: list[str]) -> float:
    """Perplexity of the marked texts over that of the originals, under `lm`."""
    base_lp, base_n = (sum(x) for x in zip(*(lm.log_prob(t) for t in texts), strict=True))
    lp, n_tok = (sum(x) for x in zip(*(lm.log_prob(t) for t in marked), strict=True))
    return math.exp(-lp / n_tok) / math.exp(-base_lp / base_n)


def changed_share(orig: list[str], marked: list[str]) -> float:
    changed = total = 0
    for a, b in zip(orig, marked, strict=True):
        wa, wb = a.split(), b.split()
        sm = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
        changed += len(wa) - sum(m.size for m in sm.get_matching_blocks())
        total += len(wa)
    return changed / total


def words_to_detect(
    key: object, marked: list[str], groups: int | None, formats: Collection[int] | None
) -> list[int]:
    """Words read until p <= DETECT_ALPHA, texts added one at a time, restarting after each hit."""
    out: list[int] = []
    cur: list[str] = []
    for t in marked:
        cur.append(t)
        if detect_lexical(key, cur, groups=groups, formats=formats).p_value <= DETECT_ALPHA:  # type: ignore[arg-type]
            out.append(sum(len(x.split()) for x in cur))
            cur = []
    return out


def measure(
    texts: list[str],
    lms: tuple[Bigram, LocalLM],
    name: str,
    groups: int | None,
    formats: Collection[int] | None,
) -> dict[str, object]:
    key = fixed_key(1)
    words = sum(len(t.split()) for t in texts)
    marked = [TextWatermarker(key.versions[0], ACCOUNT, groups, formats).apply(t) for t in texts]
    occ = occurrences(marked, groups, formats)
    row: dict[str, object] = {
        "contexts / 100 words": f"{100 * occ.ctx.size / words:.2f}",
        "words changed": f"{100 * changed_share(texts, marked):.2f} %",
        "perplexity ratio, word bigram": f"{perplexity_ratio(lms[0], texts, marked):.4f}",
        "perplexity ratio, local model (tokens)": f"{perplexity_ratio(lms[1], texts, marked):.4f}",
    }
    needed = words_to_detect(key, marked, groups, formats)
    row["words to p <= 1e-6: median (p90)"] = (
        f"{statistics.median(needed):.0f} ({statistics.quantiles(needed, n=10)[-1]:.0f})"
        if len(needed) > 1
        else "-"
    )
    for size in SIZES:
        ps = [
            detect_lexical(key, b, groups=groups, formats=formats).p_value
            for b in bundles(marked, size)
        ]
        hit = sum(p <= DETECT_ALPHA for p in ps) / len(ps)
        row[f"~{size} words: median p (share <= 1e-6)"] = f"{statistics.median(ps):.1e} ({hit:.0%})"
        print(
            f"[{name}] ~{size} words: {len(ps)} samples, median p {statistics.median(ps):.1e}, p<=1e-6 {hit:.0%}"
        )
    candidates = [f"acct-{i}" for i in range(N_CANDIDATES)] + [ACCOUNT]
    scaled = []
    for b in bundles(marked, ATTRIBUTION_WORDS):
        det = detect_lexical(
            key,
            b,
            candidates=candidates,
            report_alpha=1.0,
            max_report=3,
            groups=groups,
            formats=formats,
        )
        p = next((m.p_value for m in det.accounts if m.account_id == ACCOUNT), 1.0)
        scaled.append(min(1.0, p * 1e6 / len(candidates)))
    ok = sum(s <= ATTRIBUTE_ALPHA for s in scaled)
    row[f"~{ATTRIBUTION_WORDS} words: account's p among 1 M, median"] = (
        f"{statistics.median(scaled):.1e}" if scaled else "-"
    )
    row[f"~{ATTRIBUTION_WORDS} words: named at p <= 1e-3 among 1 M"] = f"{ok}/{len(scaled)}"
    print(f"[{name}]", row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts-per-corpus", type=int, default=400)
    args = ap.parse_args()
    n = args.texts_per_corpus
    texts = english(read_corpus_texts(CORPORA, n))
    held_out = read_corpus_texts(CORPORA, 1000)[3 * n :] if n < 1000 else []
    lm = Bigram(held_out or read_corpus_texts(["alpaca_5k"], 5000))
    words = sum(len(t.split()) for t in texts)
    lm_source = f"{len(held_out)} held-out corpus texts" if held_out else "alpaca_5k"
    print(f"{len(texts)} English texts, {words} words; bigram LM on {lm_source}")
    lms = (lm, LocalLM())
    rows = {name: measure(texts, lms, name, *cfg) for name, cfg in CONFIGS.items()}
    table = markdown_table(
        ["measure", *rows],
        [[m, *(r[m] for r in rows.values())] for m in rows["after"]],
        align="lrr",
    )
    key = fixed_key(1)
    sample: list[tuple[str, str]] = []
    for t in texts[:60]:
        wa, wb = t.split(), TextWatermarker(key.versions[0], ACCOUNT).apply(t).split()
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
            if op != "equal":
                sample.append(
                    (" ".join(wa[max(0, i1 - 2) : i2 + 1]), " ".join(wb[max(0, j1 - 2) : j2 + 1]))
                )
    for a, b in sample[:20]:
        print(f"  {a!r} -> {b!r}")
    write_section(
        __file__,
        "Lexical watermark: capacity, detection, attribution, fluency",
        f"{len(texts)} English corpus texts of >= 150 words ({', '.join(CORPORA)}), {words:,} words; "
        f"key `fixed_key(1)`, one account; bigram LM (add-{BIGRAM_K}) on {lm_source}, and the local model "
        "(`load_default_model`); attribution among "
        f"{N_CANDIDATES + 1:,} candidates, p scaled to 1 M. before = the first {LEXICON_BEFORE} lexicon "
        "groups and the apostrophe choice; after = every lexicon group and format choice.\n\n"
        + table,
    )


if __name__ == "__main__":
    main()
