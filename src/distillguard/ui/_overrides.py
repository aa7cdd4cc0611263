"""Analyst actions, recorded as the `overrides` table that the next scan honours.

The console appends one JSON object per account and action to
`<VERDICTS_DIR>/overrides.jsonl` (columns `account_id`, `action`, `ts`, `by`, `note`; the
format's JSONL encoding, timestamps as ISO-8601 UTC), and hands the same records to an
optional callback, through which the gateway applies them live via its admin API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from distillguard._errors import ConfigError

#: What an analyst can do in the console, and the override action each one records.
ConsoleAction = Literal["block", "unblock", "benign"]
CONSOLE_ACTIONS: dict[str, str] = {"block": "block", "unblock": "allow", "benign": "benign"}
OVERRIDE_ACTIONS = ("allow", "monitor", "throttle", "block", "benign")


@dataclass(frozen=True)
class Override:
    """One analyst decision about one account."""

    account_id: str
    action: str  # allow | monitor | throttle | block | benign
    ts: datetime
    by: str
    note: str

    def to_json(self) -> str:
        """One line of `overrides.jsonl`."""
        row = asdict(self)
        row["ts"] = self.ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return json.dumps(row, ensure_ascii=False)


#: Called with the overrides of one action, after they are written (e.g. the gateway admin API).
ActionHook = Callable[[Sequence[Override]], None]


class OverrideLog:
    """The append-only `overrides.jsonl` of a verdicts directory.

    Args:
        verdicts_dir: the scan output the console shows; the file lives there.
        hook: called with each batch of new overrides after they are written.
    """

    def __init__(self, verdicts_dir: str | Path, hook: ActionHook | None = None) -> None:
        self.path = Path(verdicts_dir) / "overrides.jsonl"
        self.hook = hook
        self._lock = threading.Lock()

    def record(
        self, account_ids: Iterable[str], action: str, *, by: str = "analyst", note: str = ""
    ) -> list[Override]:
        """Record `action` (a console action or an override action) for each account.

        Raises:
            ConfigError: `action` is neither a console action nor an override action.
        """
        resolved = CONSOLE_ACTIONS.get(action, action)
        if resolved not in OVERRIDE_ACTIONS:
            raise ConfigError(
                f"Unknown action {action!r}; use one of "
                f"{', '.join(sorted(set(CONSOLE_ACTIONS) | set(OVERRIDE_ACTIONS)))}."
            )
        now = datetime.now(UTC)
        rows = [
            Override(a, resolved, now, by.strip() or "analyst", note.strip())
            for a in dict.fromkeys(account_ids)
        ]
        if not rows:
            return rows
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                for row in rows:
                    f.write(row.to_json() + "\n")
        if self.hook is not None:
            self.hook(rows)
        return rows

    def read(self) -> list[Override]:
        """Every override recorded so far, oldest first (lines that do not parse are skipped)."""
        if not self.path.exists():
            return []
        out: list[Override] = []
        with self._lock, self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    d = json.loads(line)
                    ts = datetime.fromisoformat(str(d["ts"]).replace("Z", "+00:00"))
                    out.append(
                        Override(
                            str(d["account_id"]),
                            str(d["action"]),
                            ts,
                            str(d.get("by") or ""),
                            str(d.get("note") or ""),
                        )
                    )
                except (ValueError, KeyError, TypeError):
                    continue
        return out

    def latest(self) -> dict[str, Override]:
        """The most recent override of each account."""
        return {o.account_id: o for o in self.read()}

    def history(self, account_id: str) -> list[Override]:
        """An account's overrides, newest first."""
        return [o for o in reversed(self.read()) if o.account_id == account_id]


def admin_api_hook(
    base_url: str, admin_token: str | None = None, *, timeout: float = 10.0, client: Any = None
) -> ActionHook:
    """A hook that applies each override through a gateway's admin API (`POST /admin/overrides`).

    Args:
        base_url: the gateway's address, e.g. `http://127.0.0.1:8080`.
        admin_token: sent as `Authorization: Bearer ...` when given.
        timeout: seconds per request.
        client: an `httpx.Client` to use (one is made when None), e.g. with a test transport.

    Raises:
        ConfigError: (from the returned hook) the gateway refused an override.

    Examples:
        >>> app = create_app(log, verdicts, on_action=admin_api_hook("http://gw:8080", tok))  # doctest: +SKIP
    """
    import httpx

    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    http = client if client is not None else httpx.Client(timeout=timeout)
    url = base_url.rstrip("/") + "/admin/overrides"

    def hook(rows: Sequence[Override]) -> None:
        for row in rows:
            body = {
                "account_id": row.account_id,
                "action": row.action,
                "by": row.by,
                "note": row.note,
            }
            try:
                r = http.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                raise ConfigError(
                    f"The gateway at {base_url} could not be reached to apply an override: {exc}."
                ) from exc
            if r.status_code >= 400:
                raise ConfigError(
                    f"The gateway at {base_url} refused the override for {row.account_id} "
                    f"({r.status_code}): {r.text[:200]}"
                )

    return hook
