"""The code task: a program is correct when running it computes the spec, whatever its form;
every defence keeps the program a person asked for."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from distillguard.antidistill import _code as code
from distillguard.antidistill._defences import CODE_DEFENCES, code_lines, split_answer
from distillguard.antidistill._tasks import Code

ServedCheck = Callable[[Code, code.CodeProblem, str, np.random.Generator], None]


def spec(text: str) -> code.CodeProblem:
    return code.CodeProblem(tuple(text[0::2]), tuple(text[1::2]))


def test_precedence_and_the_stack_machine() -> None:
    p = spec("x*3+4-x*2")
    assert p.prompt == "Q:x*3+4-x*2=" and [p.value(x) for x in (0, 1, 5)] == [4, 5, 9]
    assert code.run("x 3 * 4 + x 2 * -", 5) == 9
    assert code.trace(p) == "a=x*3;b=a+4;c=x*2;d=b-c;A:x 3 * 4 + x 2 * -"
    assert spec("9-x-1").value(0) == 8  # left to right: (9-x)-1


def test_a_correct_program_passes_and_a_wrong_one_fails() -> None:
    p = spec("x*3+4-x*2")
    assert code.is_correct(p, "A:x 3 * 4 + x 2 * -")
    # another program for the same function passes: commuted operands, another order
    assert code.is_correct(p, "A:4 3 x * + x 2 * -")
    assert code.is_correct(p, "A:x 4 +")  # x*3 + 4 - x*2 == x + 4
    # wrong: another function, one that only agrees on some inputs, malformed programs
    assert not code.is_correct(p, "A:x 3 * 4 + x 2 * +")
    assert not code.is_correct(p, "A:x 3 * 4 + 2 x * - x -")
    assert not code.is_correct(p, "A:9")  # right at x = 5 only
    assert code.run("x 3 * 4 + x 2 *", 5) is None  # two values left
    assert code.run("x * 3", 5) is None  # pop from a one-value stack
    assert code.run("x 10 +", 5) is None and code.run("", 5) is None
    assert not code.is_correct(p, "a=x*3;b=a+4")  # no program stated


def test_worked_examples_are_correct_and_commute_gives_other_correct_programs() -> None:
    rng = np.random.default_rng(0)
    task = Code(n_ops=3, commute=0.5)
    probs = task.problems(300, rng)
    assert len({p.prompt for p in probs}) > 250 and len({len(p.prompt) for p in probs}) == 1
    for p in probs:
        text = task.worked(p, rng)
        assert task.is_correct(p, text), text
        assert len(text) <= task.longest
        # the derivation computes what the program does
        env: dict[str, int] = {}
        for name, a, op, b in code.derivation(text):
            va, vb = (env.get(v, 3 if v == "x" else int(v) if v.isdigit() else 0) for v in (a, b))
            env[name] = code._apply(op, va, vb)
        assert env[name] == p.value(3)
    one = spec("x*3+4*x")
    forms = {code.trace(one, rng, 0.5) for _ in range(80)}  # three commutative operators
    assert len(forms) == 2**3 and all(code.is_correct(one, f) for f in forms)
    assert {code.trace(one, rng, 0.0) for _ in range(5)} == {code.trace(one)}


@pytest.mark.parametrize("name", sorted(CODE_DEFENCES))
def test_every_code_defence_keeps_the_program(name: str) -> None:
    rng = np.random.default_rng(1)
    task = Code()
    for p in task.problems(200, rng):
        text = task.worked(p, rng)
        served = CODE_DEFENCES[name](text, rng)
        assert task.is_correct(p, served), (name, served)
        assert split_answer(served)[1] == split_answer(text)[1]


def test_withhold_and_summarise_drop_the_derivation() -> None:
    rng = np.random.default_rng(2)
    text = code.trace(spec("x*3+4-x*2"))
    assert CODE_DEFENCES["withhold"](text, rng) == "A:x 3 * 4 + x 2 * -"
    summary = CODE_DEFENCES["summarise"](text, rng)
    assert summary == "order *+*-;A:x 3 * 4 + x 2 * -" and code.derivation(summary) == []


def test_rewrite_keeps_every_line_under_new_names_and_forms() -> None:
    rng = np.random.default_rng(3)
    task = Code()
    for p in task.problems(100, rng):
        text = task.worked(p, rng)
        lines = code_lines(CODE_DEFENCES["rewrite"](text, rng))
        canonical = code.derivation(text)
        assert len(lines) == len(canonical)
        # the same operations on the same values once the names are mapped back
        rename = {new[0]: old[0] for new, old in zip(lines, canonical, strict=True)}
        back = [(rename[n], rename.get(a, a), op, rename.get(b, b)) for n, a, op, b in lines]
        assert back == canonical
    text = code.trace(spec("x*3+4-x*2"))
    rewrites = {CODE_DEFENCES["rewrite"](text, rng) for _ in range(40)}
    assert len(rewrites) > 30 and text not in rewrites


def test_the_gateways_rewrite_moves_the_last_line_first_and_keeps_each_as_written() -> None:
    from distillguard.antidistill._defences import sentence_rewrite
    from distillguard.enforce import rewrite_reasoning

    part = sentence_rewrite(rewrite_reasoning)
    rng = np.random.default_rng(4)
    text = code.trace(spec("x*3+4-x*2"))
    # rewrite_reasoning capitalises "d=b-c"; the statement comes back as written
    assert part(text, rng) == "d=b-c;a=x*3;b=a+4;c=x*2;A:x 3 * 4 + x 2 * -"
    assert part("A:x", rng) == "A:x"  # nothing to reorder
    # a rewriter that drops self-talk drops that statement
    assert sentence_rewrite(lambda t: t.replace("b=a+4. ", ""))(text, rng) == "a=x*3;c=x*2;d=b-c;A:x 3 * 4 + x 2 * -"


def _served_equivalent(task: Code, p: code.CodeProblem, text: str,
                        rng: np.random.Generator) -> None:
    """An equivalent program computes the same function in a form drawn per answer."""
    from distillguard.antidistill._equivalent import (
        GROWTH,
        equivalent_program,
        equivalent_program_alone,
    )

    served = equivalent_program(text, rng)
    prog = code.program_of(served)
    assert prog is not None and task.is_correct(p, served), (text, served)
    # the same function on every input, not only the checked ones
    assert all(code.run(prog, x) == p.value(x) for x in range(-20, 21))
    tree = code.tree_of(prog)
    assert tree is not None and code.operators(tree) <= (1 + GROWTH) * len(p.ops)
    # the derivation served is the derivation of the served program
    env: dict[str, int] = {}
    for name, a, op, b in code_lines(served):
        va, vb = (env[v] if v in env else 4 if v == "x" else int(v) for v in (a, b))
        env[name] = code._apply(op, va, vb)
    assert env[name] == p.value(4) and len(env) == code.operators(tree)
    alone = equivalent_program_alone(text, rng)
    assert alone.startswith("A:") and task.is_correct(p, alone)


def _served_canonicalised(task: Code, p: code.CodeProblem, text: str,
                          rng: np.random.Generator) -> None:
    """A canonicalising harvester undoes equivalent_program: still the spec's program, and one
    form whatever form it was served in."""
    from distillguard.antidistill._equivalent import (
        canonical_program,
        equivalent_program_canonicalised,
    )

    canon = canonical_program(text, rng)
    assert task.is_correct(p, canon), (text, canon)
    assert equivalent_program_canonicalised(text, rng) == canon
    assert canonical_program(code.trace(p), rng) == canon


@pytest.mark.parametrize(("seed", "check"), [(3, _served_equivalent), (4, _served_canonicalised)],
                         ids=["equivalent", "canonicalised"])
def test_every_worked_answer_is_served_as_a_correct_program(seed: int, check: ServedCheck) -> None:
    rng = np.random.default_rng(seed)
    task = Code(n_ops=3, commute=0.5)
    for p in task.problems(300, rng):
        check(task, p, task.worked(p, rng), rng)


def test_one_answer_served_again_and_again_takes_many_forms_of_one_function() -> None:
    from distillguard.antidistill._equivalent import equivalent_program

    rng = np.random.default_rng(3)
    text = code.trace(spec("x*3+4-x*2"))
    forms = {code.program_of(equivalent_program(text, rng)) for _ in range(100)}
    assert len(forms) > 30
    # an answer without a program that parses is served as it is
    for broken in ("a=x*3;A:x * 3", "no program", "A:"):
        assert equivalent_program(broken, rng) == broken


def test_a_program_reads_back_as_the_tree_it_computes() -> None:
    p = spec("x*3+4-x*2")
    assert code.tree_of("x 3 * 4 + x 2 * -") == p.tree()
    assert code.render(p.tree()) == code.trace(p)
    assert code.operators(p.tree()) == 4 and code.operators("x") == 0
    for bad in ("", "x *", "x 3", "x 10 +", "x y +"):
        assert code.tree_of(bad) is None


def test_a_canonical_program_drops_identities_and_sorts_operands_of_plus_and_times() -> None:
    from distillguard.antidistill._equivalent import canonical, canonical_program

    rng = np.random.default_rng(4)
    # identities of any subtree go, sorted operands of + and * only
    assert canonical(("+", ("*", "1", "x"), ("-", ("*", "x", "2"), ("*", "x", "2")))) == "x"
    assert canonical(("-", "x", "3")) == ("-", "x", "3") and canonical(("*", "x", "3")) == ("*", "3", "x")
    for broken in ("a=x*3;A:x * 3", "no program"):
        assert canonical_program(broken, rng) == broken