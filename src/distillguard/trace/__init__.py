"""Tracing harvested text, datasets and suspect models back to the key and the accounts.

- `trace_texts`: token layer (through the generating tokenizer) and lexical layer.
- `radioactivity_open`: teacher-forced test of a local transformers model (`open_tuples`,
  `contrast_tuples`: what it scores).
- `radioactivity_closed`: test of a model behind an OpenAI-compatible endpoint
  (`query_openai_compatible` fetches its answers).
- `TraceReport`: the evidence (tuples scored, controls, p-value, accounts).
- Scrubbing attacks an evaluator runs against the mark: `paraphrase_rules`,
  `paraphrase_resample` (before training), `estimate_neutraliser` with `NeutralisingProcessor`
  or `NeutralisedModel` (Pan et al. 2025, on the student at inference).
"""

from distillguard.trace._inputs import load_candidates, load_texts
from distillguard.trace._report import TraceReport
from distillguard.trace._scrub import (
    NeutralisedModel,
    NeutralisingProcessor,
    RuleParaphrase,
    estimate_neutraliser,
    paraphrase_resample,
    paraphrase_rules,
)
from distillguard.trace._trace import (
    bonferroni,
    contrast_tuples,
    open_tuples,
    query_openai_compatible,
    radioactivity_closed,
    radioactivity_open,
    trace_texts,
)

__all__ = [
    "NeutralisedModel",
    "NeutralisingProcessor",
    "RuleParaphrase",
    "TraceReport",
    "bonferroni",
    "contrast_tuples",
    "estimate_neutraliser",
    "load_candidates",
    "load_texts",
    "open_tuples",
    "paraphrase_resample",
    "paraphrase_rules",
    "query_openai_compatible",
    "radioactivity_closed",
    "radioactivity_open",
    "trace_texts",
]
