"""Answers that teach a harvester less: defences for flagged traffic and a testbed that measures them.

- Defences (`TEXT_DEFENCES`): `withhold`, `summarise` and `rewrite` the reasoning of an
  answer; `AntidistillHook`: antidistillation sampling on a model we run
  (`antidistill_processor` builds one for any transformers causal LM).
- `run_testbed(TestbedConfig())`: a teacher trained on a step-by-step task with checkable
  answers, students distilled from what each defence serves, and the two numbers of the
  evaluation literature: distillation effectiveness and distillation cost.
"""

from distillguard.antidistill._adsampling import ADSConfig, AntidistillHook, antidistill_processor
from distillguard.antidistill._defences import TEXT_DEFENCES, rewritten_steps
from distillguard.antidistill._task import Problem, final_answer, is_correct, problems, trace
from distillguard.antidistill._testbed import (
    ADS,
    DefenceResult,
    TestbedConfig,
    TestbedResult,
    cost,
    effectiveness,
    run_testbed,
)

__all__ = [
    "ADS",
    "ADSConfig",
    "AntidistillHook",
    "DefenceResult",
    "Problem",
    "TEXT_DEFENCES",
    "TestbedConfig",
    "TestbedResult",
    "antidistill_processor",
    "cost",
    "effectiveness",
    "final_answer",
    "is_correct",
    "problems",
    "rewritten_steps",
    "run_testbed",
    "trace",
]
