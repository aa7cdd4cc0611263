"""Lexical watermark after scrubbing the harvested answers: detection and attribution, per context.

The lexical layer marks the answers one account harvested; the operator then rewrites them by
rules before training (`paraphrase_rules`: every lexicon and format choice re-drawn at rate
`swap_rate` (the lexicon is public, the key is not), sentences reordered, punctuation mapped to
ASCII), each rule alone and all together. Same texts, same key secret, in one process, for the
two contexts a key may use (`WatermarkConfig.lexical_context`): "words" (the two previous
words) and "stable" (the two previous words no choice writes).

Per configuration: the share of the global layer's distinct contexts that still carry the keyed
choice (1/2 under H0), detection p on the whole harvested set and the share of ~2,000-word
samples at p <= 1e-6, and attribution of the harvesting account among N_CANDIDATES ids (scaled,
Bonferroni, to 1 M) on ~10,000-word samples and on the whole set. Stand-in answers: the English
corpus texts of bench_lexical.py.

Usage: nice -n 10 python benchmarks/bench_lexical_scrub.py [--texts-per-corpus 400]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distillguard.localmodel import read_corpus_texts
from distillguard.trace import RuleParaphrase, paraphrase_rules
from distillguard.watermark import TextWatermarker, WatermarkConfig, WatermarkKey, detect_lexical
from distillguard.watermark._config import LEXICAL_CONTEXTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import markdown_table, write_section  # noqa: E402
from bench_lexical import ACCOUNT, CORPORA, bundles, english  # noqa: E402

from watermark.keys import fixed_key  # noqa: E402

DETECT_WORDS = 2000
ATTRIBUTION_WORDS = 10_000
N_CANDIDATES = 20_000
DETECT_ALPHA = 1e-6
ATTRIBUTE_ALPHA = 1e-3
ATTACKS: dict[str, RuleParaphrase | None] = {
    "none": None,
    "re-draw every choice at rate 0.5": RuleParaphrase(reorder_rate=0.0, normalise=False),
    "reorder sentences (rate 0.5)": RuleParaphrase(swap_rate=0.0, normalise=False),
    "punctuation to ASCII": RuleParaphrase(swap_rate=0.0, reorder_rate=0.0),
    "all rules (paraphrase_rules defaults)": RuleParaphrase(),
}


def attribution_p(key: WatermarkKey, texts: list[str], candidates: list[str]) -> float:
    """p of ACCOUNT among the candidates, scaled to 1 M candidates."""
    det = detect_lexical(key, texts, candidates=candidates, report_alpha=1.0, max_report=3)
    p = next((m.p_value for m in det.accounts if m.account_id == ACCOUNT), 1.0)
    return min(1.0, p * 1e6 / len(candidates))


def measure(key: WatermarkKey, texts: list[str], candidates: list[str]) -> dict[str, str]:
    whole = detect_lexical(key, texts)
    samples = [detect_lexical(key, b).p_value for b in bundles(texts, DETECT_WORDS)]
    attributed = [attribution_p(key, b, candidates) for b in bundles(texts, ATTRIBUTION_WORDS)]
    ok = sum(p <= ATTRIBUTE_ALPHA for p in attributed)
    return {
        "keyed share": f"{whole.statistic / max(whole.scored_tuples, 1):.3f}",
        "whole set p": f"{whole.p_value:.1e}",
        f"~{DETECT_WORDS} words at p <= 1e-6": f"{sum(p <= DETECT_ALPHA for p in samples) / len(samples):.0%}",
        f"~{ATTRIBUTION_WORDS} words attributed (1 M)": f"{ok}/{len(attributed)}",
        "whole set attribution p (1 M)": f"{attribution_p(key, texts, candidates):.1e}",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts-per-corpus", type=int, default=400)
    args = ap.parse_args()
    texts = english(read_corpus_texts(CORPORA, args.texts_per_corpus))
    words = sum(len(t.split()) for t in texts)
    print(f"{len(texts)} English texts, {words} words")
    candidates = [f"acct-{i}" for i in range(N_CANDIDATES)] + [ACCOUNT]
    rows = []
    for context in LEXICAL_CONTEXTS:
        key = fixed_key(1, WatermarkConfig(lexical_context=context))
        marked = [TextWatermarker(key.versions[0], ACCOUNT).apply(t) for t in texts]
        for attack, rules in ATTACKS.items():
            data = marked if rules is None else [
                paraphrase_rules(t, seed=i, rules=rules) for i, t in enumerate(marked)
            ]
            row = {"context": context, "attack on the harvested answers": attack, **measure(key, data, candidates)}
            print(row, flush=True)
            rows.append(row)
    table = markdown_table(list(rows[0]), [list(r.values()) for r in rows], align="ll" + "r" * (len(rows[0]) - 2))
    write_section(
        __file__,
        "Lexical watermark after scrubbing",
        f"{len(texts)} English corpus texts of >= 150 words ({', '.join(CORPORA)}), {words:,} words, "
        f"marked for one account (key `fixed_key(1)`), then attacked by `paraphrase_rules` (seeded "
        f"per text); attribution among {N_CANDIDATES + 1:,} candidates, p scaled to 1 M. Keyed share: "
        "global contexts whose choice is still the keyed one (1/2 without the mark).\n\n" + table,
    )


if __name__ == "__main__":
    main()
