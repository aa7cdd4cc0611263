"""The testbed's tasks behind one interface: a reasoning task (column addition) and a code task
(a stack-machine program for an expression), each with checkable answers, worked examples
for the teacher and its own form of every reasoning defence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from distillguard.antidistill import _code, _task
from distillguard.antidistill._defences import CODE_DEFENCES, TEXT_DEFENCES, Defence
from distillguard.antidistill._equivalent import (
    canonical_program,
    equivalent_program,
    equivalent_program_alone,
    equivalent_program_canonicalised,
)

#: the code task's answer-changing defence, and the same with the reasoning dropped by the harvester
EQUIVALENT = "equivalent-program"
EQUIVALENT_ALONE = "equivalent-program, reasoning dropped"
#: the harvester who canonicalises every served program before training: on the undefended
#: answers (what canonicalising alone does to a student), and on equivalent-program's
CANONICAL = "none, canonicalised by the harvester"
EQUIVALENT_CANONICAL = "equivalent-program, canonicalised by the harvester"


class Task(Protocol):
    @property
    def name(self) -> str: ...

    def problems(self, n: int, rng: np.random.Generator) -> list[Any]:
        """`n` random problems; each has a `prompt`, and all prompts have one length."""

    def worked(self, problem: Any, rng: np.random.Generator) -> str:
        """A correct served answer (reasoning, then `A:` result) to teach the teacher."""

    def is_correct(self, problem: Any, text: str) -> bool: ...

    @property
    def longest(self) -> int:
        """Characters of the longest worked answer."""

    @property
    def defences(self) -> dict[str, Defence]: ...

    @property
    def answer_forcing(self) -> bool:
        """Antidistillation sampling writes the answer after the reasoning greedily, untilted
        (the paper's answer forcing, for a short checkable result); False where the answer is
        itself the work a student learns (a program) and is tilted too."""

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Addition:
    """`digits`-digit column addition, one worked step per column (`_task`)."""

    digits: int = 4
    name: str = "addition"

    def problems(self, n: int, rng: np.random.Generator) -> list[Any]:
        return list(_task.problems(n, self.digits, rng))

    def worked(self, problem: Any, rng: np.random.Generator) -> str:
        return _task.trace(problem)

    def is_correct(self, problem: Any, text: str) -> bool:
        return _task.is_correct(problem, text)

    @property
    def longest(self) -> int:
        return len(_task.trace(_task.Problem(0, 0, self.digits)))

    @property
    def defences(self) -> dict[str, Defence]:
        return TEXT_DEFENCES

    @property
    def answer_forcing(self) -> bool:
        return True

    def describe(self) -> str:
        return f"{self.digits}-digit addition with worked column steps"


@dataclass(frozen=True)
class Code:
    """A stack-machine program for an expression of `n_ops` operators (`_code`); `commute`:
    share of `+` and `*` whose operands the worked examples swap."""

    n_ops: int = 3
    commute: float = 0.5
    name: str = "code"

    def problems(self, n: int, rng: np.random.Generator) -> list[Any]:
        return list(_code.problems(n, self.n_ops, rng))

    def worked(self, problem: Any, rng: np.random.Generator) -> str:
        return _code.trace(problem, rng, self.commute)

    def is_correct(self, problem: Any, text: str) -> bool:
        return _code.is_correct(problem, text)

    @property
    def longest(self) -> int:
        ops = ("*",) * self.n_ops
        return len(_code.trace(_code.CodeProblem(("x",) * (self.n_ops + 1), ops)))

    @property
    def defences(self) -> dict[str, Defence]:
        return {**CODE_DEFENCES, EQUIVALENT: equivalent_program, EQUIVALENT_ALONE: equivalent_program_alone,
                CANONICAL: canonical_program, EQUIVALENT_CANONICAL: equivalent_program_canonicalised}

    @property
    def answer_forcing(self) -> bool:
        return False

    def describe(self) -> str:
        return (f"stack-machine programs for {self.n_ops}-operator expressions, checked on "
                f"{len(_code.TEST_INPUTS)} inputs, with a derivation line per operator")


TASKS = ("addition", "code")
