"""Enforcement: rate limits (per key, account, campaign) and policy decisions from verdicts."""

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
    "OVERRIDE_ACTIONS",
    "REASONING_DEFENCES",
    "Action",
    "Decision",
    "DegradeConfig",
    "LimitResult",
    "LimitSet",
    "Limiter",
    "LimitsConfig",
    "LimitsTimeout",
    "Override",
    "Policy",
    "ReasoningDefence",
    "Reservation",
    "Scope",
    "TextDefence",
    "ThinkFilter",
    "rewrite_reasoning",
    "served_reasoning",
    "strip_think",
    "summarise_reasoning",
]
