"""distillguard: defence for LLM API providers against distillation attacks."""

from distillguard._errors import (
    ConfigError,
    DistillguardError,
    LogFormatError,
    MissingExtraError,
    ScenarioError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DistillguardError",
    "LogFormatError",
    "MissingExtraError",
    "ScenarioError",
    "__version__",
]
