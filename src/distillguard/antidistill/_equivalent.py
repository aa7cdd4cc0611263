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

`canonical_program` is the attacker's answer to it: a harvester who canonicalises every
served program before training (identities removed, the operands of `+` and `*` in one sorted
order, the derivation rewritten for the canonical program under the names a, b, c...) trains
on one consistent form again, without knowing the spec.
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


def _is_zero(node: Tree) -> bool:
    """`a-a` for any subtree `a`: zero on every input."""
    return not isinstance(node, str) and node[0] == "-" and node[1] == node[2]


def _sort_key(node: Tree) -> str:
    """A total order on subtrees (their postfix), for the canonical order of operands."""
    return node if isinstance(node, str) else f"{_sort_key(node[1])} {_sort_key(node[2])} {node[0]}"


def canonical(node: Tree) -> Tree:
    """`node` with every identity `v*1`, `1*v`, `v+z`, `z+v`, `v-z` (z any `a-a`) removed and
    the operands of each `+` and `*` in sorted order: one form per function shape, whatever
    form it was served in."""
    if isinstance(node, str):
        return node
    op, left, right = node
    left, right = canonical(left), canonical(right)
    if op == "*" and "1" in (left, right):
        return left if right == "1" else right
    if op in "+-" and _is_zero(right):
        return left
    if op == "+" and _is_zero(left):
        return right
    if op in "+*" and _sort_key(right) < _sort_key(left):
        left, right = right, left
    return (op, left, right)


def canonical_program(text: str, rng: np.random.Generator) -> str:
    """What a canonicalising harvester trains on: the served program canonicalised
    (`canonical`) with its own derivation; an answer whose program does not parse as served
    (a `Defence` that ignores `rng`)."""
    program = _code.program_of(text)
    tree = _code.tree_of(program) if program is not None else None
    return text if tree is None else _code.render(canonical(tree))


def equivalent_program_canonicalised(text: str, rng: np.random.Generator) -> str:
    """`equivalent_program` as a canonicalising harvester trains on it."""
    return canonical_program(equivalent_program(text, rng), rng)
