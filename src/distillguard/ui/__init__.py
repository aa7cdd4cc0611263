"""The analyst console: campaigns, accounts, actions, case files and STIX export in a browser.

`create_app(log_dir, verdicts_dir)` returns a FastAPI app (serve it with
`distillguard ui LOG_DIR VERDICTS_DIR`, or mount it in the gateway under `/console`).
"""

from distillguard.ui._app import create_app
from distillguard.ui._guard import COOKIE, ConsoleGuard, cookie_value, csrf_value
from distillguard.ui._overrides import (
    CONSOLE_ACTIONS,
    OVERRIDE_ACTIONS,
    ActionHook,
    Override,
    OverrideLog,
    admin_api_hook,
)

__all__ = [
    "COOKIE",
    "CONSOLE_ACTIONS",
    "OVERRIDE_ACTIONS",
    "ActionHook",
    "ConsoleGuard",
    "Override",
    "OverrideLog",
    "admin_api_hook",
    "cookie_value",
    "create_app",
    "csrf_value",
]
