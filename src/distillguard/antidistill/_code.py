"""A code task with checkable answers: write the function an expression specifies, as a program
for a small stack machine, checked by running it.

Prompt: an expression in `x` (operands `x` and the digits 1-9, operators `+ - *` with the usual
precedence, left to right). Answer: a program of the stack language (`x` and digits push,
an operator pops two values and pushes the result), correct when it computes the spec's
value on every test input. Any correct program passes: commuted operands or another order of
evaluation are as good as the canonical one. The reasoning trace is the derivation: one
three-address line per operator in evaluation order, naming each intermediate value::

    Q:x*3+4-x*2=      prompt
    a=x*3;b=a+4;c=x*2;d=b-c;A:x 3 * 4 + x 2 * -

Code has many correct programs for one spec, and so does the served distribution: with
`commute` the worked examples write the operands of `+` and `*` in either order (the trace
and the program agree), so a teacher trained on them has real choices to make when it samples.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from distillguard.antidistill._task import ANSWER_MARK

OPERATORS = "+-*"
_PRECEDENCE = {"+": 1, "-": 1, "*": 2}
#: inputs every program is run on (negative and beyond one digit, so no shortcut passes)
TEST_INPUTS: tuple[int, ...] = (-3, 0, 1, 2, 5, 7, 11)
#: names of intermediate values, in order of definition (`x` is the input)
TEMPS = "abcdefghijklmnopqrstuvw"
#: a program may not push more than this many values (a runaway answer fails, it does not hang)
MAX_PROGRAM_TOKENS = 64

#: a leaf (`x` or a digit) or (operator, left, right)
Tree: TypeAlias = "str | tuple[str, Tree, Tree]"


@dataclass(frozen=True)
class CodeProblem:
    """One spec: `ops` operators between `len(ops) + 1` operands, written left to right."""

    operands: tuple[str, ...]
    ops: tuple[str, ...]

    @property
    def spec(self) -> str:
        out = self.operands[0]
        for op, b in zip(self.ops, self.operands[1:], strict=True):
            out += op + b
        return out

    @property
    def prompt(self) -> str:
        return f"Q:{self.spec}="

    def tree(self) -> Tree:
        """The spec parsed with precedence (left-associative)."""
        return parse(self.spec)

    def value(self, x: int) -> int:
        return evaluate(self.tree(), x)


def problems(n: int, n_ops: int, rng: np.random.Generator) -> list[CodeProblem]:
    """`n` random specs with `n_ops` operators; each operand is `x` or a digit 1-9 (half `x`)."""
    out = []
    for _ in range(n):
        operands = tuple("x" if rng.random() < 0.5 else str(int(rng.integers(1, 10))) for _ in range(n_ops + 1))
        ops = tuple(OPERATORS[int(rng.integers(len(OPERATORS)))] for _ in range(n_ops))
        out.append(CodeProblem(operands, ops))
    return out


def parse(spec: str) -> Tree:
    """Operator-precedence parse of a spec into (op, left, right) tuples over leaf strings."""
    tokens = list(spec)
    values: list[Tree] = [tokens[0]]
    pending: list[str] = []
    for op, leaf in zip(tokens[1::2], tokens[2::2], strict=True):
        while pending and _PRECEDENCE[pending[-1]] >= _PRECEDENCE[op]:
            right, left = values.pop(), values.pop()
            values.append((pending.pop(), left, right))
        pending.append(op)
        values.append(leaf)
    while pending:
        right, left = values.pop(), values.pop()
        values.append((pending.pop(), left, right))
    return values[0]


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def evaluate(node: Tree, x: int) -> int:
    if isinstance(node, str):
        return x if node == "x" else int(node)
    op, left, right = node
    return _apply(op, evaluate(left, x), evaluate(right, x))


def trace(p: CodeProblem, rng: np.random.Generator | None = None, commute: float = 0.0) -> str:
    """The worked answer: the derivation's lines, then the program (postfix of the tree).

    With `rng` and `commute` > 0 the operands of each `+` and `*` are swapped with that
    probability (an equally correct program, and a derivation that matches it).
    """
    tree = p.tree()
    return render(commuted(tree, rng, commute) if rng is not None else tree)


def commuted(node: Tree, rng: np.random.Generator, share: float) -> Tree:
    """`node` with the operands of each `+` and `*` swapped with probability `share` (drawn
    parent first, then the left subtree as written, then the right)."""
    if isinstance(node, str):
        return node
    op, left, right = node
    if op in "+*" and rng.random() < share:
        left, right = right, left
    a = commuted(left, rng, share)
    return (op, a, commuted(right, rng, share))


def render(tree: Tree) -> str:
    """The answer for `tree`: one derivation line per operator in evaluation order, naming each
    intermediate value, then the program (the tree in postfix)."""
    lines: list[str] = []
    program: list[str] = []

    def walk(node: Tree) -> str:
        if isinstance(node, str):
            program.append(node)
            return node
        op, left, right = node
        a, b = walk(left), walk(right)
        program.append(op)
        name = TEMPS[len(lines)]
        lines.append(f"{name}={a}{op}{b}")
        return name

    walk(tree)
    return ";".join(lines) + f";{ANSWER_MARK}{' '.join(program)}"


def tree_of(program: str) -> Tree | None:
    """The expression a postfix program computes; None for a malformed one (as `run`)."""
    tokens = program.split()
    if not tokens or len(tokens) > MAX_PROGRAM_TOKENS:
        return None
    stack: list[Tree] = []
    for tok in tokens:
        if tok == "x" or re.fullmatch(r"\d", tok):
            stack.append(tok)
        elif tok in OPERATORS and len(tok) == 1 and len(stack) >= 2:
            right, left = stack.pop(), stack.pop()
            stack.append((tok, left, right))
        else:
            return None
    return stack[0] if len(stack) == 1 else None


def operators(node: Tree) -> int:
    """How many operators `node` applies."""
    return 0 if isinstance(node, str) else 1 + operators(node[1]) + operators(node[2])


def program_of(text: str) -> str | None:
    """The program an answer states (what follows the last `A:`), or None."""
    at = text.rfind(ANSWER_MARK)
    return text[at + len(ANSWER_MARK) :].strip() if at >= 0 else None


def run(program: str, x: int) -> int | None:
    """The value `program` leaves on the stack for input `x`; None for a malformed program
    (an unknown token, a pop from an empty stack, or not exactly one value left)."""
    tokens = program.split()
    if not tokens or len(tokens) > MAX_PROGRAM_TOKENS:
        return None
    stack: list[int] = []
    for tok in tokens:
        if tok == "x":
            stack.append(x)
        elif re.fullmatch(r"\d", tok):
            stack.append(int(tok))
        elif tok in OPERATORS and len(tok) == 1:
            if len(stack) < 2:
                return None
            b, a = stack.pop(), stack.pop()
            stack.append(_apply(tok, a, b))
        else:
            return None
    return stack[0] if len(stack) == 1 else None


def passes(p: CodeProblem, program: str, inputs: Sequence[int] = TEST_INPUTS) -> bool:
    """Whether `program` computes the spec on every test input."""
    return all(run(program, x) == p.value(x) for x in inputs)


def is_correct(p: CodeProblem, text: str) -> bool:
    prog = program_of(text)
    return prog is not None and passes(p, prog)


def derivation(text: str) -> list[tuple[str, str, str, str]]:
    """(name, left, op, right) of every derivation line written in the canonical form."""
    return re.findall(r"([a-w])=([a-wx1-9])([-+*])([a-wx1-9])", text.split(ANSWER_MARK)[0])
