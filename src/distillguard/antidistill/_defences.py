"""What a flagged account is served instead of the full reasoning trace.

Each defence maps one served answer (reasoning, then `A:` result) to what the account gets.
All keep the stated result, so a person asking the question still gets the right answer;
they differ in how much of the reasoning a student can learn from:

- `withhold`: the result alone (what the gateway's degrade does today);
- `summarise`: a one-line digest (the carries), no worked steps;
- `rewrite`: every step kept, its meaning unchanged, its form drawn at random per answer
  (step order, wording, notation), in the spirit of PART (arXiv 2510.11545): a person reads
  the same reasoning, a student sees no consistent pattern to imitate.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from distillguard.antidistill._task import ANSWER_MARK, final_answer

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


def _result(text: str) -> str:
    ans = final_answer(text)
    return f"{ANSWER_MARK}{ans}" if ans is not None else text


def none(text: str, rng: np.random.Generator) -> str:
    """No defence: the answer as the model wrote it."""
    return text


def withhold(text: str, rng: np.random.Generator) -> str:
    """The result alone."""
    return _result(text)


def summarise(text: str, rng: np.random.Generator) -> str:
    """The carries of each column as one digest, then the result."""
    carries = "".join(str(int(t) // 10) for *_, t in _STEP.findall(text))
    return f"carries {carries};{_result(text)}"


def rewrite(text: str, rng: np.random.Generator) -> str:
    """Every step, same numbers, in a random order, wording and notation."""
    steps = _STEP.findall(text)
    order = rng.permutation(len(steps))
    form = _FORMS[int(rng.integers(len(_FORMS)))]
    joiner = _JOINERS[int(rng.integers(len(_JOINERS)))]
    parts = [form.format(i=i, x=steps[i][0], y=steps[i][1], c=steps[i][2], t=steps[i][3]) for i in order]
    return f"{joiner.join(parts)}{joiner}{_result(text)}"


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


TEXT_DEFENCES: dict[str, Defence] = {
    "none": none,
    "withhold": withhold,
    "summarise": summarise,
    "rewrite": rewrite,
}
