"""The testbed at a small size: each task's teacher learns its task, no defence costs the person
asking a correct answer, and a student distilled from what the defence serves learns little
(withheld reasoning on addition; equivalent programs, reasoning dropped, on code)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from distillguard import antidistill as ad
from distillguard.antidistill import cost, effectiveness
from distillguard.antidistill._charlm import LMConfig, lr_factor
from distillguard.antidistill._defences import CODE_DEFENCES
from distillguard.antidistill._equivalent import equivalent_program, equivalent_program_alone
from distillguard.antidistill._testbed import Taught, accuracy, serve, student_accuracy, teach

# one teacher per task for the module, one student per test: the students are the slow part
ADDITION = ad.TestbedConfig(
    digits=3, teacher_examples=5000, harvest=1000, test=300,
    teacher=LMConfig(steps=600), student=LMConfig(n_embd=64, steps=500), seeds=(0,),
)
CODE = replace(ADDITION, task="code")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def addition_teacher(one_thread: None) -> Taught:
    return teach(ADDITION)


@pytest.fixture(scope="module")
def code_teacher(one_thread: None) -> Taught:
    return teach(CODE)


def served_accuracy(taught: Taught, served: list[str]) -> float:
    return accuracy(taught.task, taught.harvest, served)


@pytest.mark.slow
def test_withheld_reasoning_teaches_the_student_little_at_no_cost(addition_teacher: Taught) -> None:
    taught = addition_teacher
    assert taught.accuracy >= 0.9 and served_accuracy(taught, taught.served_plain) >= 0.9
    withheld = serve(taught, ad.TEXT_DEFENCES["withhold"])
    for name in ("withhold", "rewrite"):  # no text defence costs the person asking an answer
        assert served_accuracy(taught, serve(taught, ad.TEXT_DEFENCES[name])) == served_accuracy(taught, taught.served_plain)
    assert np.mean([len(s) for s in withheld]) < np.mean([len(s) for s in taught.served_plain]) / 3
    # measured 0.02 at this size, against 0.75 for a student of the full answers (bench: 0.81):
    # the trace is what teaches carrying, and a student of the results alone does not find it
    assert student_accuracy(ADDITION, taught, withheld, 0) <= 0.3


@pytest.mark.slow
def test_equivalent_programs_teach_the_student_little_even_without_the_reasoning(code_teacher: Taught) -> None:
    taught = code_teacher
    # measured 0.947 at this size
    assert taught.accuracy >= 0.85
    plain = served_accuracy(taught, taught.served_plain)
    for defence in (CODE_DEFENCES["withhold"], CODE_DEFENCES["rewrite"], equivalent_program):
        assert served_accuracy(taught, serve(taught, defence)) == plain  # every program still works
    # the harvester drops the derivation and trains on the programs alone: a student of the
    # plain programs alone scores about 0.70 at this size, one of the full answers 0.84 to 0.88
    # (docs/benchmarks.md); the target (effectiveness <= 0.5) puts the defended student at or
    # below 0.4 (this is the bench's seed-0 student of the same arm: same teacher, data, seed)
    alone = serve(taught, equivalent_program_alone)
    assert student_accuracy(CODE, taught, alone, 0) <= 0.4


def test_the_two_numbers() -> None:
    assert effectiveness(0.3, 0.6) == 0.5 and effectiveness(0.2, 0.0) == 1.0
    assert cost(0.95, 1.0) == pytest.approx(0.05) and cost(0.5, 0.0) == 0.0
    assert [round(lr_factor(s, 100), 3) for s in (0, 9, 10, 99)] == [0.1, 1.0, 1.0, 0.0]


def test_students_are_trained_at_every_tilt_within_the_cost_cap() -> None:
    from distillguard.antidistill._testbed import _arms, _students_for, ads_name

    cfg = ad.TestbedConfig(ads_lams=(0.01, 0.1, 1.0), ads_student_max_cost=0.05, defences=("none", "withhold", ad.ADS))
    assert [a for a, _ in _arms(cfg, ad.TEXT_DEFENCES)] == ["none", "withhold", ads_name(0.01), ads_name(0.1), ads_name(1.0)]
    served = {"none": 1.0, "withhold": 1.0, ads_name(0.01): 1.0, ads_name(0.1): 0.96, ads_name(1.0): 0.2}
    assert _students_for(cfg, served) == {"none", "withhold", ads_name(0.01), ads_name(0.1)}
    # no tilt within the cap: the mildest, so the table still says what the defence does
    served.update({ads_name(0.01): 0.9, ads_name(0.1): 0.5})
    assert _students_for(cfg, served) == {"none", "withhold", ads_name(0.01)}
    with pytest.raises(ValueError, match="unknown defence 'shuffle'"):
        _arms(ad.TestbedConfig(defences=("none", "shuffle")), ad.TEXT_DEFENCES)
    with pytest.raises(ValueError, match="unknown task 'sorting'"):
        ad.TestbedConfig(task="sorting").make_task()


def test_served_accuracy_has_a_wilson_interval() -> None:
    r = ad.DefenceResult("x", 0.9, (), 10.0, 1000)
    lo, hi = r.served_ci95()
    assert lo == pytest.approx(0.8798, abs=1e-4) and hi == pytest.approx(0.9171, abs=1e-4)
    assert np.isnan(r.mean) and ad.DefenceResult("x", 0.5, (0.4, 0.6), 1.0, 10).mean == pytest.approx(0.5)
