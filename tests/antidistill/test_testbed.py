"""The testbed end to end at a small size: the teacher learns the task, a student distilled from
its full answers learns much of it, one distilled from withheld reasoning learns little, and
no text defence costs the person asking a correct answer."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from distillguard import antidistill as ad
from distillguard.antidistill import cost, effectiveness, run_testbed
from distillguard.antidistill._charlm import LMConfig, lr_factor

SMALL = ad.TestbedConfig(
    digits=3, teacher_examples=5000, harvest=1000, test=300,
    teacher=LMConfig(steps=600), student=LMConfig(n_embd=64, steps=500),
    seeds=(0,), defences=("none", "withhold", "rewrite"),
)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_withheld_reasoning_teaches_the_student_little_at_no_cost(one_thread: None) -> None:
    res = run_testbed(SMALL)
    assert res.teacher_accuracy >= 0.9
    none = res.get("none")
    assert none.served_accuracy >= 0.9 and none.mean >= 0.4, none
    assert res.effectiveness("none") == 1.0
    # measured 0.03 at this size (students 0.75 vs 0.02): the trace is what teaches carrying
    assert res.effectiveness("withhold") <= 0.5
    assert res.cost("withhold") == 0.0 and res.cost("rewrite") == 0.0
    assert res.get("withhold").served_chars < none.served_chars / 3


@pytest.mark.slow
def test_the_code_teacher_writes_working_programs_and_text_defences_keep_them(one_thread: None) -> None:
    res = run_testbed(ad.TestbedConfig(
        task="code", teacher_examples=5000, harvest=1000, test=300, teacher=LMConfig(steps=600),
        student=LMConfig(n_embd=64, steps=500), seeds=(0,), defences=("none", "withhold", "rewrite")))
    # measured 0.947 at this size; a student from the full answers 0.857
    assert res.teacher_accuracy >= 0.85 and res.get("none").mean >= 0.5
    assert res.cost("withhold") == 0.0 and res.cost("rewrite") == 0.0


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
