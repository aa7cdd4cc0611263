"""What a flagged account is served instead of the full reasoning trace.

Each defence maps one served answer (reasoning statements joined by `;`, then `A:` result) to
what the account gets. All keep the stated result, so a person asking the question still gets
the right answer; they differ in how much of the reasoning a student can learn from:

- `withhold`: the result alone (what the gateway's degrade does today);
- `summarise`: a one-line digest in the task's terms (the carries; the order of operations),
  no worked steps;
- `rewrite`: every step kept, its meaning unchanged, its form drawn at random per answer
  (step order, wording, notation, names), in the task's terms: a person reads the same
  reasoning, a student sees no consistent pattern to imitate;
- any English rewrite of a reasoning trace, applied to the trace's statements as sentences
  (`sentence_rewrite`): the benchmark measures the gateway's own PART-style rewrite
  (`distillguard.enforce.rewrite_reasoning`, after PART, arXiv 2510.11545) this way, task-agnostic.

`TEXT_DEFENCES` are the addition task's, `CODE_DEFENCES` the code task's.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from distillguard.antidistill._task import ANSWER_MARK

Defence = Callable[[str, np.random.Generator], str]

_STEP = re.compile(r"(\d)\+(\d)\+(\d)=(\d\d)")
# ways to write "column i: x + y + carry = total"; each keeps every number of the step
_FORMS = (
    "c{i}:{x}+{y}+{c}={t}",
    "col{i} {x} plus {y} plus {c} is {t}",
    "[{i}] {t}={x}+{y}+{c}",
    "{x}+{c}+{y}={t}@{i}",
)
_JOINERS = (";", " | ", ", ")


def stated_result(text: str) -> str:
    """The answer from its last `A:` on (the whole text when it states none)."""
    at = text.rfind(ANSWER_MARK)
    return text[at:] if at >= 0 else text


def none(text: str, rng: np.random.Generator) -> str:
    """No defence: the answer as the model wrote it."""
    return text


def withhold(text: str, rng: np.random.Generator) -> str:
    """The result alone."""
    return stated_result(text)


def summarise(text: str, rng: np.random.Generator) -> str:
    """The carries of each column as one digest, then the result."""
    carries = "".join(str(int(t) // 10) for *_, t in _STEP.findall(text))
    return f"carries {carries};{stated_result(text)}"


def rewrite(text: str, rng: np.random.Generator) -> str:
    """Every step, same numbers, in a random order, wording and notation."""
    steps = _STEP.findall(text)
    order = rng.permutation(len(steps))
    form = _FORMS[int(rng.integers(len(_FORMS)))]
    joiner = _JOINERS[int(rng.integers(len(_JOINERS)))]
    parts = [form.format(i=i, x=steps[i][0], y=steps[i][1], c=steps[i][2], t=steps[i][3]) for i in order]
    return f"{joiner.join(parts)}{joiner}{stated_result(text)}"


def rewritten_steps(text: str) -> dict[int, tuple[int, int, int, int]]:
    """Column -> (x, y, carry, total) read back from any of `rewrite`'s forms (for tests and the
    similarity measure: a rewrite keeps every step)."""
    out: dict[int, tuple[int, int, int, int]] = {}
    patterns = (
        (r"c(\d+):(\d)\+(\d)\+(\d)=(\d\d)", (0, 1, 2, 3, 4)),
        (r"col(\d+) (\d) plus (\d) plus (\d) is (\d\d)", (0, 1, 2, 3, 4)),
        (r"\[(\d+)\] (\d\d)=(\d)\+(\d)\+(\d)", (0, 2, 3, 4, 1)),
        (r"(\d)\+(\d)\+(\d)=(\d\d)@(\d+)", (4, 0, 2, 1, 3)),
    )
    for pat, (gi, gx, gy, gc, gt) in patterns:
        for m in re.finditer(pat, text):
            g = m.groups()
            out[int(g[gi])] = (int(g[gx]), int(g[gy]), int(g[gc]), int(g[gt]))
    return out


def split_answer(text: str) -> tuple[list[str], str]:
    """The reasoning's statements and the result (from the last `A:` on; empty when none)."""
    at = text.rfind(ANSWER_MARK)
    reasoning, result = (text[:at], text[at:]) if at >= 0 else (text, "")
    return [s for s in reasoning.split(";") if s.strip()], result


def sentence_rewrite(rewriter: Callable[[str], str]) -> Defence:
    """A defence that serves `rewriter`'s version of the trace, its statements read as the
    sentences of one paragraph, then the result.

    The rewriter (an English one, such as the gateway's `rewrite_reasoning`) may reorder, drop
    or reword sentences; each sentence it returns comes back as a statement, as written where
    only its case changed: the testbed's alphabet has no capitals, so the capital a sentence
    gets is the one form change not kept.
    """

    def defence(text: str, rng: np.random.Generator) -> str:
        statements, result = split_answer(text)
        if not statements:
            return text
        by_lower = {s.lower(): s for s in statements}
        out = rewriter(" ".join(f"{s}." for s in statements)).strip()
        back = [s[:-1] if s.endswith(".") else s for s in re.split(r"(?<=\.)\s+", out) if s]
        return "".join(f"{by_lower.get(s.lower(), s)};" for s in back) + result

    return defence


# --- the code task: derivation lines "name=left<op>right", then the program ---

_LINE = re.compile(r"([a-w])=([a-wx1-9])([-+*])([a-wx1-9])")
# ways to write "name = left op right"; each keeps the operator and both operands
_CODE_FORMS = (
    "{n}={a}{op}{b}",
    "{a}{op}{b}->{n}",
    "let {n} be {a}{op}{b}",
    "[{n}] {a} {op} {b}",
)


def summarise_code(text: str, rng: np.random.Generator) -> str:
    """The operators in the order the derivation applies them, then the program."""
    statements, result = split_answer(text)
    order = "".join(m.group(3) for m in map(_LINE.fullmatch, statements) if m)
    return f"order {order};{result}"


def rewrite_code(text: str, rng: np.random.Generator) -> str:
    """Every derivation line, same operation on the same values, under fresh names (a random
    permutation of the letters), in a random notation and joiner."""
    statements, result = split_answer(text)
    lines = [m.groups() for m in map(_LINE.fullmatch, statements) if m]
    letters = [c for c in "abcdefghijklmnopqrstuvw"]
    fresh = dict(zip([n for n, *_ in lines], rng.permutation(letters)[: len(lines)], strict=True))
    form = _CODE_FORMS[int(rng.integers(len(_CODE_FORMS)))]
    joiner = _JOINERS[int(rng.integers(len(_JOINERS)))]
    parts = [form.format(n=fresh[n], a=fresh.get(a, a), op=op, b=fresh.get(b, b)) for n, a, op, b in lines]
    return f"{joiner.join(parts)}{joiner}{result}"


def code_lines(text: str) -> list[tuple[str, str, str, str]]:
    """(name, left, op, right) of every derivation line in any of `rewrite_code`'s forms."""
    reasoning = text[: text.rfind(ANSWER_MARK)] if ANSWER_MARK in text else text
    patterns = (
        (r"(?<![a-z])([a-w])=([a-wx1-9])([-+*])([a-wx1-9])", (0, 1, 2, 3)),
        (r"([a-wx1-9])([-+*])([a-wx1-9])->([a-w])", (3, 0, 1, 2)),
        (r"let ([a-w]) be ([a-wx1-9])([-+*])([a-wx1-9])", (0, 1, 2, 3)),
        (r"\[([a-w])\] ([a-wx1-9]) ([-+*]) ([a-wx1-9])", (0, 1, 2, 3)),
    )
    found: list[tuple[int, tuple[str, str, str, str]]] = []
    for pat, (gn, ga, go, gb) in patterns:
        for m in re.finditer(pat, reasoning):
            g = m.groups()
            found.append((m.start(), (g[gn], g[ga], g[go], g[gb])))
    return [line for _, line in sorted(found)]


TEXT_DEFENCES: dict[str, Defence] = {
    "none": none,
    "withhold": withhold,
    "summarise": summarise,
    "rewrite": rewrite,
}

CODE_DEFENCES: dict[str, Defence] = {
    "none": none,
    "withhold": withhold,
    "summarise": summarise_code,
    "rewrite": rewrite_code,
}
