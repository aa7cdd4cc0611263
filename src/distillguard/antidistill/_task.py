"""A step-by-step task with checkable answers: column addition with a written reasoning trace.

A teacher that has learnt the trace adds reliably; a student that sees only final answers has
to discover carrying on its own. That gap is what the reasoning defences protect, and the
final answer stays checkable under every defence, so what a defence costs a person is
measured exactly.

Served answer (the reasoning trace, then the result)::

    Q:4721+0389=      prompt
    1+9+0=10;2+8+1=11;7+3+1=11;4+0+1=05;A:05110

Each step is "digit + digit + carry in = two-digit column sum", units first. The result has
`digits + 1` digits (leading zero kept), so every answer has one length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

ANSWER_MARK = "A:"
_STEP = re.compile(r"(\d)\+(\d)\+(\d)=(\d\d)")


@dataclass(frozen=True)
class Problem:
    a: int
    b: int
    digits: int

    @property
    def prompt(self) -> str:
        return f"Q:{self.a:0{self.digits}d}+{self.b:0{self.digits}d}="

    @property
    def result(self) -> str:
        return f"{self.a + self.b:0{self.digits + 1}d}"


@dataclass(frozen=True)
class Step:
    """One column: its position (0 = units), the two digits, the carry in and the column sum."""

    position: int
    x: int
    y: int
    carry: int

    @property
    def total(self) -> int:
        return self.x + self.y + self.carry


def problems(n: int, digits: int, rng: np.random.Generator) -> list[Problem]:
    """`n` random problems with `digits`-digit operands (leading zeros allowed)."""
    hi = 10**digits
    pairs = rng.integers(0, hi, size=(n, 2))
    return [Problem(int(a), int(b), digits) for a, b in pairs]


def steps_of(p: Problem) -> list[Step]:
    """The columns of `p`, units first."""
    out, carry = [], 0
    for i in range(p.digits):
        x, y = (p.a // 10**i) % 10, (p.b // 10**i) % 10
        out.append(Step(i, x, y, carry))
        carry = (x + y + carry) // 10
    return out


def trace(p: Problem) -> str:
    """The full served answer: every column, then the result."""
    cols = ";".join(f"{s.x}+{s.y}+{s.carry}={s.total:02d}" for s in steps_of(p))
    return f"{cols};{ANSWER_MARK}{p.result}"


def final_answer(text: str) -> str | None:
    """The result an answer states (the digits after the last `A:`), or None."""
    at = text.rfind(ANSWER_MARK)
    if at < 0:
        return None
    m = re.match(r"\d+", text[at + len(ANSWER_MARK) :])
    return m.group(0) if m else None


def is_correct(p: Problem, text: str) -> bool:
    return final_answer(text) == p.result


def parse_trace(text: str) -> list[tuple[int, int, int, int]]:
    """(x, y, carry, total) of every step written in the canonical form, in order."""
    return [tuple(int(g) for g in m.groups()) for m in _STEP.finditer(text)]  # type: ignore[misc]
