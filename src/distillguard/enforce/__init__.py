"""Enforcement: rate limits (per key, account, campaign) and policy decisions from verdicts."""

from distillguard.enforce._limits import (
    ALLOWED,
    Limiter,
    LimitResult,
    LimitsConfig,
    LimitSet,
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
    summarise_reasoning,
)
from distillguard.enforce._tokens import Reservation

__all__ = [
    "ACTIONS",
    "ALLOWED",
    "OVERRIDE_ACTIONS",
    "Action",
    "Decision",
    "DegradeConfig",
    "LimitResult",
    "LimitSet",
    "Limiter",
    "LimitsConfig",
    "Override",
    "Policy",
    "Reservation",
    "Scope",
    "ThinkFilter",
    "strip_think",
    "summarise_reasoning",
]
