"""What a flagged account is served in place of a reasoning trace: one function per defence.

- `withhold`: nothing;
- `summarise`: a one-line stand-in (`summarise_reasoning`);
- `rewrite`: every statement kept, its form changed, after PART (arXiv 2510.11545, "protecting
  reasoning traces"): self-talk is removed and each paragraph states its conclusion first, so a
  person reads the same reasoning while a student no longer sees the order and the habits it
  would imitate (`rewrite_reasoning`);
- `antidistill`: antidistillation sampling, a change to how a model the gateway runs itself
  generates (`distillguard.antidistill.AntidistillProcessor`); the trace text of an upstream
  the gateway does not run gets `DegradeConfig.antidistill_fallback` instead.
"""

from __future__ import annotations

import re
from typing import Literal

ReasoningDefence = Literal["withhold", "summarise", "rewrite", "antidistill"]
TextDefence = Literal["withhold", "summarise", "rewrite"]
REASONING_DEFENCES: tuple[str, ...] = ("withhold", "summarise", "rewrite", "antidistill")
TEXT_DEFENCES: tuple[str, ...] = ("withhold", "summarise", "rewrite")

#: characters of the first sentence a summary keeps
SUMMARY_CHARS = 160

# Self-talk: sentences that carry no statement ("Hmm.", "Wait, let me check.") and openers that
# only mark the writer's hesitation ("Wait, ", "Okay so "). PART's first step removes them.
_FILLER_SENTENCE = re.compile(
    r"^(?:(?:hmm+|wait|okay|ok|alright|right|well|so|um+|uh+|oh|ah)[\s,.!?-]*)*"
    r"(?:let me (?:think|see|check|double[- ]check|verify|recheck|reconsider)(?: (?:again|this|that|it))?)?[\s.!?]*$",
    re.IGNORECASE,
)
_OPENER = re.compile(
    r"^(?:(?:hmm+|wait|okay|ok|alright|well|um+|uh+|oh|ah|actually|so)\b[,.!]?\s+)+"
    r"|^(?:let me (?:think|see)[,.:]?\s+)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def summarise_reasoning(reasoning: str) -> str:
    """A one-line stand-in for a withheld reasoning trace: its first sentence and its size."""
    words = reasoning.split()
    first = re.split(r"(?<=[.!?])\s", reasoning.strip(), maxsplit=1)[0][:SUMMARY_CHARS]
    return f"{first} [reasoning summarised: {len(words)} words withheld]"


def _sentences(paragraph: str) -> list[str]:
    """The paragraph's sentences with self-talk removed (PART step 1)."""
    out = []
    for s in _SENTENCE_END.split(paragraph.strip()):
        if not s or _FILLER_SENTENCE.match(s):
            continue
        kept = _OPENER.sub("", s)
        out.append(kept[:1].upper() + kept[1:] if kept else s)
    return out


def rewrite_reasoning(reasoning: str) -> str:
    """The trace's statements, self-talk removed and each paragraph's conclusion first.

    PART (arXiv 2510.11545) rewrites a trace in two steps: drop the self-talk, and move each
    sub-conclusion before the derivation that reached it. Every other sentence is kept word
    for word, so the reasoning a person reads is the one the model wrote; deterministic, so a
    repeated request teaches nothing new.
    """
    paragraphs = []
    for para in re.split(r"\n\s*\n|\n", reasoning):
        sents = _sentences(para)
        if len(sents) > 1:
            sents = [sents[-1], *sents[:-1]]
        if sents:
            paragraphs.append(" ".join(sents))
    return "\n".join(paragraphs)


def served_reasoning(defence: TextDefence, reasoning: str) -> str | None:
    """What replaces `reasoning` under `defence`; None when nothing is served."""
    if not reasoning or defence == "withhold":
        return None
    if defence == "summarise":
        return summarise_reasoning(reasoning)
    return rewrite_reasoning(reasoning) or None
