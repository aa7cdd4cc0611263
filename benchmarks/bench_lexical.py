"""Lexical (post-hoc) watermark: capacity, detection, attribution and fluency, before vs after.

Stand-in answers: English texts of >= 150 words from the shipped corpora (arena_hard,
sharegpt_1k, wildchat_1k). They are prompts, many of them code pasted without fences or text in
another language written in ASCII, where the layer marks little by design (nothing inside code);
the samples are also reported over the prose texts alone (`is_prose`: at most
`MAX_CODE_LINE_SHARE` of the lines code-like, at least `MIN_FUNCTION_WORD_SHARE` of the words
English function words). Every configuration runs in the same process on the same texts and
fixed key: "no sentence spaces" = every choice but `SENTENCE_SPACE`, "all" = every choice.

Per configuration, written to docs/benchmarks.md (`_docs.write_section`):
- distinct scored contexts per 100 words, share of words changed (word-level diff);
- fluency: perplexity ratio marked / original under a word bigram model (add-k) trained on
  held-out corpus texts (not the ones marked), and under the local model (`load_default_model`,
  token level, windows of its context length; the first `LM_TEXTS` texts);
- detection: words needed to reach p <= 1e-6 (texts added one at a time, restarting after each
  hit: median and 90th percentile), median p and share at p <= 1e-6 for samples of about W words
  (and of 2,000 words of prose texts);
- attribution at about 10,000 words: p of the marking account among N_CANDIDATES ids, scaled
  (Bonferroni, linear in the count) to 1 M candidates: median, and share at p <= 1e-3 (all
  texts, and prose texts).

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
from distillguard.watermark import TextWatermarker, WatermarkKey, detect_lexical
from distillguard.watermark import _formats as F
from distillguard.watermark._lexical import _CODEISH, occurrences

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
# name -> (lexicon groups, format choices); None: all
CONFIGS: dict[str, tuple[int | None, Collection[int] | None]] = {
    "no sentence spaces": (None, F.FORMATS - {F.SENTENCE_SPACE}),
    "all": (None, None),
}
# the local model reads about 3 tokens a word at a few thousand tokens per CPU second: its
# perplexity ratio is taken on the first LM_TEXTS texts
LM_TEXTS = 40
_TOKEN = re.compile(r"[A-Za-z']+|[0-9]+|[^\sA-Za-z0-9]")
PROSE_WORDS = 2000
MAX_CODE_LINE_SHARE = 0.2
MIN_FUNCTION_WORD_SHARE = 0.2
_FUNCTION = """the a an and or but of to in on at for with from by as is are was were be been it this
    that these those you your we our they their he she his her i my not no if so do does can will"""
FUNCTION_WORDS = frozenset(_FUNCTION.split())


def is_prose(text: str) -> bool:
    """English prose: few code-like lines (the marker's `_CODEISH` marks), many function words."""
    lines = [x for x in text.splitlines() if x.strip()]
    code = sum(bool(_CODEISH.search(x)) or x.startswith(("    ", "\t")) for x in lines)
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", text)]
    function = sum(w in FUNCTION_WORDS for w in words)
    return code <= MAX_CODE_LINE_SHARE * len(lines) and function >= MIN_FUNCTION_WORD_SHARE * len(words)


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
        self._seen: dict[str, tuple[float, int]] = {}  # the originals are read once for every configuration

    def log_prob(self, text: str) -> tuple[float, int]:
        if text not in self._seen:
            self._seen[text] = self._log_prob(text)
        return self._seen[text]

    def _log_prob(self, text: str) -> tuple[float, int]:
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
    stable = key.versions[0].config.lexical_context == "stable"
    words = sum(len(t.split()) for t in texts)
    marked = [TextWatermarker(key.versions[0], ACCOUNT, groups, formats).apply(t) for t in texts]
    prose = [m for t, m in zip(texts, marked, strict=True) if is_prose(t)]
    occ = occurrences(marked, groups, formats, stable)
    row: dict[str, object] = {
        "contexts / 100 words": f"{100 * occ.ctx.size / words:.2f}",
        "words changed": f"{100 * changed_share(texts, marked):.2f} %",
        "perplexity ratio, word bigram": f"{perplexity_ratio(lms[0], texts, marked):.4f}",
        f"perplexity ratio, local model (tokens, first {LM_TEXTS} texts)": (
            f"{perplexity_ratio(lms[1], texts[:LM_TEXTS], marked[:LM_TEXTS]):.4f}"
        ),
    }
    needed = words_to_detect(key, marked, groups, formats)
    row["words to p <= 1e-6: median (p90)"] = (
        f"{statistics.median(needed):.0f} ({statistics.quantiles(needed, n=10)[-1]:.0f})"
        if len(needed) > 1
        else "-"
    )
    samples = [(f"~{size} words", marked, size) for size in SIZES]
    samples.insert(3, (f"~{PROSE_WORDS} words of prose", prose, PROSE_WORDS))
    for label, source, size in samples:
        ps = [
            detect_lexical(key, b, groups=groups, formats=formats).p_value
            for b in bundles(source, size)
        ]
        hit = sum(p <= DETECT_ALPHA for p in ps) / len(ps)
        row[f"{label}: median p (share <= 1e-6)"] = f"{statistics.median(ps):.1e} ({hit:.0%} of {len(ps)})"
        print(f"[{name}] {label}: {len(ps)} samples, median p {statistics.median(ps):.1e}, p<=1e-6 {hit:.0%}")
    for label, source in (("", marked), (", prose", prose)):
        row.update(attribution(key, source, groups, formats, label))
    print(f"[{name}]", row)
    return row


def attribution(
    key: WatermarkKey,
    marked: list[str],
    groups: int | None,
    formats: Collection[int] | None,
    label: str,
) -> dict[str, str]:
    """The marking account's p among 1 M on ~ATTRIBUTION_WORDS-word samples: median, share named."""
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
    return {
        f"~{ATTRIBUTION_WORDS} words{label}: account's p among 1 M, median": (
            f"{statistics.median(scaled):.1e}" if scaled else "-"
        ),
        f"~{ATTRIBUTION_WORDS} words{label}: named at p <= 1e-3 among 1 M": f"{ok}/{len(scaled)}",
    }


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
    prose = [t for t in texts if is_prose(t)]
    prose_words = sum(len(t.split()) for t in prose)
    print(f"{len(texts)} English texts, {words} words ({len(prose)} prose, {prose_words} words); bigram LM on {lm_source}")
    lms = (lm, LocalLM())
    rows = {name: measure(texts, lms, name, *cfg) for name, cfg in CONFIGS.items()}
    table = markdown_table(
        ["measure", *rows],
        [[m, *(r[m] for r in rows.values())] for m in rows["all"]],
        align="l" + "r" * len(rows),
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
        f"{len(texts)} English corpus texts of >= 150 words ({', '.join(CORPORA)}), {words:,} words "
        f"({len(prose)} prose texts, {prose_words:,} words: at most {MAX_CODE_LINE_SHARE:.0%} of the "
        f"lines code-like, at least {MIN_FUNCTION_WORD_SHARE:.0%} of the words English function "
        "words; the others are code pasted without fences, text in another language, raw web pages); "
        f"key `fixed_key(1)`, one account; bigram LM (add-{BIGRAM_K}) on {lm_source}, and the local model "
        f"(`load_default_model`, first {LM_TEXTS} texts); attribution among "
        f"{N_CANDIDATES + 1:,} candidates, p scaled to 1 M. no sentence spaces = every choice but "
        "the sentence space; all = every lexicon group and format choice.\n\n"
        + table,
    )


if __name__ == "__main__":
    main()
