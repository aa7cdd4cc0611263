"""Equivalent programs: the code a person asked for, in a form drawn afresh for every answer.

A reasoning defence leaves the program alone, so a harvester who drops the reasoning still
learns the programs (withhold's effectiveness on the code task). This defence changes the
program itself, never what it computes: it reads the served program as an expression tree
and writes an equivalent one, per answer at random,

- the operands of each `+` and `*` in either order;
- some values wrapped in an identity (`v*1`, `1*v`, `v+(x-x)`, `v-(x-x)`);

then the derivation of that very program (one line per operator) under fresh names and a
random notation (`_defences.rewrite_code`). Every served program computes exactly the
function the teacher's did, on every input; a student sees the same spec answered in forms
that share no consistent pattern to imitate. An answer whose program does not parse is
served unchanged.
"""

from __future__ import annotations

import numpy as np

from distillguard.antidistill import _code
from distillguard.antidistill._code import Tree
from distillguard.antidistill._defences import rewrite_code, stated_result

#: share of the values (leaves and operator results) wrapped in an identity
IDENTITY_SHARE = 0.25
#: share of the `+` and `*` whose operands are swapped
COMMUTE_SHARE = 0.5
#: identities add at most this many operators per operator of the program (answers stay
#: within a few times the plain answer's length)
GROWTH = 2
_ZERO: Tree = ("-", "x", "x")


def _identity(node: Tree, rng: np.random.Generator) -> Tree:
    """`node` inside one identity drawn at random: the same value on every input."""
    form = int(rng.integers(4))
    if form == 0:
        return ("*", node, "1")
    if form == 1:
        return ("*", "1", node)
    return ("+" if form == 2 else "-", node, _ZERO)


def equivalent(node: Tree, rng: np.random.Generator, room: int) -> Tree:
    """A tree computing what `node` does, with at most `room` operators more."""
    spare = [room]

    def walk(n: Tree) -> Tree:
        if not isinstance(n, str):
            op, left, right = n
            if op in "+*" and rng.random() < COMMUTE_SHARE:
                left, right = right, left
            n = (op, walk(left), walk(right))
        if rng.random() < IDENTITY_SHARE and spare[0] >= 2:
            wrapped = _identity(n, rng)
            spare[0] -= _code.operators(wrapped) - _code.operators(n)
            return wrapped
        return n

    return walk(node)


def equivalent_program(text: str, rng: np.random.Generator) -> str:
    """The served answer with its program in an equivalent form drawn for this answer, and
    the derivation of that program in a random notation (a `Defence`)."""
    program = _code.program_of(text)
    tree = _code.tree_of(program) if program is not None else None
    if tree is None:
        return text
    # every intermediate value needs a name of its own
    ops = _code.operators(tree)
    new = equivalent(tree, rng, min(GROWTH * ops, len(_code.TEMPS) - ops))
    return rewrite_code(_code.render(new), rng)


def equivalent_program_alone(text: str, rng: np.random.Generator) -> str:
    """`equivalent_program` with its reasoning dropped: what a harvester who discards the
    derivation trains on (the attacker the reasoning defences cannot stop)."""
    return stated_result(equivalent_program(text, rng))
