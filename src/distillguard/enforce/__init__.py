"""Enforcement: rate limits (per key, account, campaign), policy decisions from verdicts, and
what a flagged account is served (reasoning defences, `equivalent-program`)."""

from distillguard.enforce._limits import (
    ALLOWED,
    Limiter,
    LimitResult,
    LimitsConfig,
    LimitSet,
    LimitsTimeout,
    Scope,
)
from distillguard.enforce._policy import (
    ACTIONS,
    OVERRIDE_ACTIONS,
    Action,
    Decision,
    DegradeConfig,
    Override,
    Policy,
    ThinkFilter,
    strip_think,
)
from distillguard.enforce._programs import (
    CODE_DEFENCES,
    CodeDefence,
    ProgramFilter,
    equivalent_programs,
    equivalent_python,
)
from distillguard.enforce._reasoning import (
    REASONING_DEFENCES,
    ReasoningDefence,
    TextDefence,
    rewrite_reasoning,
    served_reasoning,
    summarise_reasoning,
)
from distillguard.enforce._tokens import Reservation

__all__ = [
    "ACTIONS",
    "ALLOWED",
    "CODE_DEFENCES",
    "OVERRIDE_ACTIONS",
    "REASONING_DEFENCES",
    "Action",
    "CodeDefence",
    "Decision",
    "DegradeConfig",
    "LimitResult",
    "LimitSet",
    "Limiter",
    "LimitsConfig",
    "LimitsTimeout",
    "Override",
    "Policy",
    "ProgramFilter",
    "ReasoningDefence",
    "Reservation",
    "Scope",
    "TextDefence",
    "ThinkFilter",
    "equivalent_programs",
    "equivalent_python",
    "rewrite_reasoning",
    "served_reasoning",
    "strip_think",
    "summarise_reasoning",
]
