"""Text pools and their vectorised rendering.

A prompt is rendered as ``lead + ctx + body + tail``: four indices into four pools of
strings, joined per row by Arrow (`binary_join_element_wise`) - no Python loop per event.
Pools hold pre-computed variants of the corpora's texts (light perturbations: casing,
punctuation, typos, trimming), template parts (a template's text before and after its
slot), context chunks (slices of real texts a user pastes before a question) and
greetings or closing words. See docs/simulator.md for why and how the corpora are
stretched this way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GREETINGS = [
    "Hi, ", "Hello! ", "hey ", "Hi there. ", "Good morning! ", "Quick question: ",
    "Please help: ", "Can you help me? ", "I need help with this. ", "Question: ", "hello, ",
    "Hey, quick one - ", "Hola, ", "Bonjour, ", "你好，", "Привет! ", "Hi assistant, ",
    "Hello again. ", "ok so ", "So, ", "Help me out here: ", "I have a question. ",
    "Dear assistant, ", "hi! ", "Morning. ", "Need a hand: ", "Hey there! ", "Yo, ",
    "Could you help? ", "Quick one: ", "Hi, hope you're well. ", "Hello there, ",
    "Thanks for the help earlier. ", "One more thing: ", "Sorry to bother you, ",
    "Hi again, ", "Good evening. ", "Hallo, ", "Olá, ", "こんにちは。",
]
CLOSINGS = [
    " Thanks!", " thanks", "\n\nThank you.", " Please be concise.", "\n\nKeep it short.",
    " in simple terms", "\n\nExplain like I'm five.", " ??", " pls", "\n\nAnswer in English.",
    "\n\nUse bullet points.", " Give examples.", "\n\nbe brief", " thx", " :)", "\n\nThanks in advance!",
    " Please.", "\n\nWhat do you think?", " (short answer please)", "\n\nMake it detailed.",
    " asap", "\n\nThank you so much!", " Any ideas?", "\n\nPlease explain your answer.",
    " - thanks a lot", "\n\nFormat it as a table.", " Cheers.", "\n\nI am a beginner.",
    " in Python please", "\n\nNo need for an intro.", " ty", "\n\nPlease answer in Chinese.",
    "\n\nОтветь на русском.", " (for a school project)", "\n\nKeep it under 200 words.",
    " Be honest.", "\n\nThanks, you're the best.", " if possible", "\n\nStep by step please.",
    " 谢谢",
]
FOLLOWUPS = [
    "continue", "Continue", "thanks", "Thank you!", "make it shorter", "Can you explain more?",
    "why?", "give me another example", "more details please", "ok", "rewrite it",
    "Can you make it more formal?", "that's wrong", "translate it to English", "go on",
    "What about the second point?", "summarize this", "and in Python?", "shorter please",
    "Can you give me the code?", "explain like I'm five", "try again", "perfect, thanks",
]
CTX_WRAPPERS = [
    "{x}\n\n", "Context:\n{x}\n\n", 'Here is the text:\n"""\n{x}\n"""\n\n', "{x}\n\n---\n\n",
    "My notes: {x}\n\n", "{x}\n\n", "Background: {x}\n\n", "```\n{x}\n```\n\n", "{x}\n",
    "Text: {x}\n\n",
]
REWORDINGS: list[tuple[str, list[str]]] = [
    ("Please ", ["Kindly ", "", "Please, "]),
    ("please ", ["kindly ", ""]),
    ("step by step", ["step-by-step", "one step at a time", "carefully, step by step"]),
    ("step-by-step", ["step by step", "in clear steps"]),
    ("Explain", ["Describe", "Walk through", "Clarify"]),
    ("You are ", ["You're ", "Act as ", "You will be "]),
    ("Write ", ["Produce ", "Generate ", "Compose "]),
    ("write ", ["produce ", "generate "]),
    ("the following", ["the below", "this", "the given"]),
    ("answer", ["response", "reply"]),
    ("detailed", ["thorough", "comprehensive", "in-depth"]),
    ("Provide ", ["Give ", "Offer ", "Supply "]),
    ("Think ", ["Reason ", "Think carefully ", "Work "]),
    ("Score ", ["Rate ", "Grade "]),
    ("helpful", ["useful", "capable"]),
    ("task", ["job", "assignment"]),
    ("function", ["routine", "method"]),
    ("Complete ", ["Finish ", "Implement ", "Fill in "]),
    ("Solve", ["Work out", "Answer"]),
]


def _fast(rng: np.random.Generator | random.Random) -> random.Random:
    # scalar draws from numpy are slow; a local `random.Random` seeded from it is fast and
    # just as deterministic
    return rng if isinstance(rng, random.Random) else random.Random(int(rng.integers(1 << 62)))


def perturb(text: str, rng: np.random.Generator | random.Random, ops: int = 1) -> str:
    """One light, human-like perturbation of `text` (casing, punctuation, a typo, trimming)."""
    r = _fast(rng)
    out = text
    for _ in range(ops):
        k = r.randrange(9)
        if k == 0:
            out = out.lower()
        elif k == 1 and out:
            out = (out[0].lower() if out[0].isupper() else out[0].upper()) + out[1:]
        elif k == 2:
            out = out.rstrip().rstrip(".?!") if out.rstrip()[-1:] in ".?!" else out.rstrip() + "?"
        elif k in (3, 4, 5) and len(out) > 8:
            # a typo: swap, drop or double a letter inside the text
            i = r.randrange(1, len(out) - 2)
            if k == 3:
                out = out[:i] + out[i + 1] + out[i] + out[i + 2 :]
            elif k == 4:
                out = out[:i] + out[i + 1 :]
            else:
                out = out[:i] + out[i] + out[i:]
        elif k == 6:
            out = out.strip()
        elif k == 7:
            out = out.replace("\n\n", "\n") if "\n\n" in out else out.replace(", ", ",  ", 1)
        else:
            # trim a long text at a sentence end, as when pasting only part of it
            cut = out.rfind(". ", 0, max(40, int(len(out) * 0.8)))
            out = out[: cut + 1] if cut > 40 else out + " "
    return out


def reword(text: str, rng: np.random.Generator | random.Random, strength: float = 0.5) -> str:
    """Light rewording of a template's wrapper text: synonym swaps, occasionally a typo."""
    r = _fast(rng)
    out = text
    for src, alts in REWORDINGS:
        if src in out and r.random() < strength:
            out = out.replace(src, alts[r.randrange(len(alts))])
    if r.random() < 0.2:
        out = perturb(out, r)
    return out


@dataclass(frozen=True)
class BodySet:
    """Where one set's base texts and their variants sit in the body pool."""

    offset: int
    n_base: int
    n_var: int

    def index(self, base: np.ndarray, var: np.ndarray) -> np.ndarray:
        out: np.ndarray = (self.offset + base.astype(np.int64) * self.n_var + var).astype(np.int32)
        return out


# Response lengths: bucket b holds texts of about 2**(b/4) tokens (4 characters per token).
RESP_BUCKETS = 57
RESP_VARIANTS = 6


class TextPools:
    """Append-only pools of strings; index 0 of lead/ctx/tail is the empty string."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.leads: list[str] = [""]
        self.ctxs: list[str] = [""]
        self.tails: list[str] = [""]
        self.bodies: list[str] = []
        self.systems: list[str | None] = [None]
        self._lead_ix: dict[str, int] = {"": 0}
        self._tail_ix: dict[str, int] = {"": 0}
        self._sys_ix: dict[str, int] = {}
        self.responses: list[str] = []
        self._arrays: dict[str, pa.Array] | None = None

    # ---- building -------------------------------------------------------------
    def _clip(self, t: str) -> str:
        return t if len(t) <= self.max_chars else t[: self.max_chars]

    def add_bodies(
        self, texts: list[str], rng: np.random.Generator, n_var: int = 1, reword_mode: bool = False
    ) -> BodySet:
        """Add base texts, each with `n_var` variants (variant 0 is the text itself)."""
        off = len(self.bodies)
        r = _fast(rng)
        for t in texts:
            t = self._clip(t)
            self.bodies.append(t)
            for v in range(1, n_var):
                if reword_mode:
                    self.bodies.append(reword(t, r, 0.6))
                else:
                    self.bodies.append(perturb(t, r, ops=1 + (v % 2)))
        return BodySet(off, len(texts), n_var)

    def lead(self, s: str) -> int:
        if s not in self._lead_ix:
            self._lead_ix[s] = len(self.leads)
            self.leads.append(s)
        return self._lead_ix[s]

    def tail(self, s: str) -> int:
        if s not in self._tail_ix:
            self._tail_ix[s] = len(self.tails)
            self.tails.append(s)
        return self._tail_ix[s]

    def system(self, s: str) -> int:
        if s not in self._sys_ix:
            self._sys_ix[s] = len(self.systems)
            self.systems.append(s)
        return self._sys_ix[s]

    def add_ctxs(self, sources: list[str], n: int, rng: np.random.Generator,
                 wrappers: list[str] | None = None) -> np.ndarray:
        """Add `n` context chunks: slices of real texts (median ~350 characters) in a wrapper."""
        wraps = CTX_WRAPPERS if wrappers is None else wrappers
        start = len(self.ctxs)
        long_src = [s for s in sources if len(s) >= 60]
        pick = rng.integers(len(long_src), size=n)
        lens = np.clip(rng.lognormal(np.log(350), 0.8, size=n), 40, 3000).astype(np.int64)
        wr = rng.integers(len(wraps), size=n)
        offs = rng.random(n)
        for i in range(n):
            s = long_src[int(pick[i])]
            ln = min(int(lens[i]), len(s))
            a = int(offs[i] * (len(s) - ln + 1))
            self.ctxs.append(wraps[int(wr[i])].replace("{x}", s[a : a + ln].strip()))
        return np.arange(start, len(self.ctxs), dtype=np.int32)

    def add_raw_ctxs(self, texts: list[str]) -> np.ndarray:
        """Add context entries as given (no slicing, no wrapper); returns their indices."""
        start = len(self.ctxs)
        self.ctxs.extend(self._clip(t) for t in texts)
        return np.arange(start, len(self.ctxs), dtype=np.int32)

    def template_parts(self, template: str, slot: str, rng: np.random.Generator, variants: int,
                       strength: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """Split `template` at `slot` into lead/tail pool entries; variant 0 is verbatim."""
        leads, tails = [], []
        for v in range(variants):
            t = template if v == 0 else reword(template, rng, strength)
            pre, _, post = t.partition(slot)
            leads.append(self.lead(pre))
            tails.append(self.tail(post))
        return np.asarray(leads, np.int32), np.asarray(tails, np.int32)

    def build_responses(self, sources: list[str], rng: np.random.Generator) -> None:
        """Fill the response pool: RESP_VARIANTS texts per length bucket, cut from real prose."""
        order = rng.permutation(len(sources))
        blob = "\n\n".join(sources[int(i)] for i in order[:4000])
        while len(blob) < 120_000:
            blob += "\n\n" + blob
        for b in range(RESP_BUCKETS):
            chars = max(1, int(round(2 ** (b / 4))) * 4)
            for _ in range(RESP_VARIANTS):
                a = int(rng.integers(0, max(1, len(blob) - chars - 40)))
                a = blob.find(" ", a, a + 40) + 1  # start at a word
                self.responses.append(blob[a : a + chars].strip() or blob[a : a + chars])

    # ---- rendering ------------------------------------------------------------
    def arrays(self) -> dict[str, pa.Array]:
        if self._arrays is None:
            self._arrays = {
                "lead": pa.array(self.leads, pa.string()),
                "ctx": pa.array(self.ctxs, pa.string()),
                "body": pa.array(self.bodies, pa.string()),
                "tail": pa.array(self.tails, pa.string()),
                "system": pa.array(self.systems, pa.string()),
                "response": pa.array(self.responses, pa.string()),
            }
        return self._arrays

    def render_prompts(
        self, lead: np.ndarray, ctx: np.ndarray, body: np.ndarray, tail: np.ndarray
    ) -> pa.Array:
        a = self.arrays()
        return pc.binary_join_element_wise(
            a["lead"].take(pa.array(lead)),
            a["ctx"].take(pa.array(ctx)),
            a["body"].take(pa.array(body)),
            a["tail"].take(pa.array(tail)),
            "",
        )


def response_index(tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index into the response pool for texts of about `tokens` tokens."""
    b = np.clip(np.rint(4 * np.log2(np.maximum(tokens, 1))), 0, RESP_BUCKETS - 1).astype(np.int64)
    out: np.ndarray = (b * RESP_VARIANTS + rng.integers(RESP_VARIANTS, size=len(tokens))).astype(np.int32)
    return out
