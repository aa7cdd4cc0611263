"""The exception tree of distillguard.

    DistillguardError
    ├── LogFormatError        a traffic log file breaks the format (names file, row, column)
    ├── ScenarioError         a simulator scenario file is invalid
    ├── ConfigError           any other configuration is invalid
    └── MissingExtraError     an optional dependency is not installed (names the extra; also an ImportError)

The CLI maps each to a one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations


class DistillguardError(Exception):
    """Base of every error distillguard raises on purpose."""


class LogFormatError(DistillguardError):
    """A traffic log file breaks the format.

    Carries where: the file, the row (1-based, or a row group) and the column.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        where = ", ".join(
            part
            for part in (
                f"file {file}" if file else "",
                f"row {row}" if row is not None else "",
                f"column {column!r}" if column else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message


class ScenarioError(DistillguardError):
    """A simulator scenario is invalid."""


class ConfigError(DistillguardError):
    """A configuration value is invalid."""


class MissingExtraError(DistillguardError, ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"This needs {module!r}, which comes with the {extra!r} extra: "
            f"pip install 'distillguard[{extra}]'"
        )
