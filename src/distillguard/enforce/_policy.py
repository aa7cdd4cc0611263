"""Policy: what the gateway does with an account, from detection verdicts and manual overrides.

Actions, from mildest to strictest: `allow`, `monitor` (log only), `throttle` (lower
limits, and served as degraded unless configured otherwise), `degrade` (a reasoning defence,
capped output length), `block`. Which reasoning defence (`_reasoning.py`: withhold, summarise,
rewrite, antidistillation sampling) each of `throttle` and `degrade` gets is `DegradeConfig`'s.
An analyst's override always wins over a verdict; `benign` is an override meaning allow.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from distillguard._errors import ConfigError
from distillguard.enforce._reasoning import (
    REASONING_DEFENCES,
    TEXT_DEFENCES,
    ReasoningDefence,
    TextDefence,
)

Action = Literal["allow", "monitor", "throttle", "degrade", "block"]
ACTIONS: tuple[str, ...] = ("allow", "monitor", "throttle", "degrade", "block")
OVERRIDE_ACTIONS: tuple[str, ...] = (*ACTIONS, "benign")


_HISTORY = 8  # verdict actions kept per account


@dataclass(frozen=True)
class DegradeConfig:
    """How a degraded account is served.

    Args:
        max_tokens_cap: output cap of a degraded account's requests.
        reasoning: the reasoning defence of a `degrade` account (`_reasoning.py`).
        throttle_reasoning: the reasoning defence of a `throttle` account; None: as `reasoning`.
        throttle_degrades: throttled accounts are degraded too (a distiller wants exactly the
            long reasoning traces).
        antidistill_fallback: what the trace text gets under `antidistill` where the gateway
            does not generate the answer itself (any upstream but the local model).
        antidistill_lam: the tilt of antidistillation sampling on the local model.
    """

    max_tokens_cap: int = 256
    reasoning: ReasoningDefence = "withhold"
    throttle_reasoning: ReasoningDefence | None = None
    throttle_degrades: bool = True
    antidistill_fallback: TextDefence = "withhold"
    antidistill_lam: float = 0.1

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.max_tokens_cap, bool) or not isinstance(self.max_tokens_cap, int) or self.max_tokens_cap < 1:
            problems.append(f"max_tokens_cap must be a positive integer, got {self.max_tokens_cap!r}")
        choices = ", ".join(REASONING_DEFENCES)
        if self.reasoning not in REASONING_DEFENCES:
            problems.append(f"reasoning must be one of {choices}, got {self.reasoning!r}")
        if self.throttle_reasoning is not None and self.throttle_reasoning not in REASONING_DEFENCES:
            problems.append(f"throttle_reasoning must be one of {choices} (or None: as reasoning), got {self.throttle_reasoning!r}")
        if self.antidistill_fallback not in TEXT_DEFENCES:
            problems.append(f"antidistill_fallback must be one of {', '.join(TEXT_DEFENCES)}, got {self.antidistill_fallback!r}")
        if isinstance(self.antidistill_lam, bool) or not isinstance(self.antidistill_lam, int | float) or not self.antidistill_lam >= 0:
            problems.append(f"antidistill_lam must be a non-negative number, got {self.antidistill_lam!r}")
        if problems:
            raise ConfigError("Invalid degrade settings: " + "; ".join(problems) + ".")

    def defence_for(self, action: str) -> ReasoningDefence | None:
        """The reasoning defence an account under `action` gets; None: its answers are untouched."""
        if action == "degrade":
            return self.reasoning
        if action == "throttle" and self.throttle_degrades:
            return self.throttle_reasoning or self.reasoning
        return None

    def text_defence(self, defence: ReasoningDefence) -> TextDefence:
        """What `defence` does to trace text (antidistill: the fallback; it acts on generation)."""
        return self.antidistill_fallback if defence == "antidistill" else defence


@dataclass(frozen=True)
class Decision:
    """What to do with one request of one account, and why."""

    action: Action
    source: Literal["default", "verdict", "override"] = "default"
    campaign_id: str | None = None
    reason: str | None = None
    degraded: bool = False
    #: the reasoning defence applied (set exactly when `degraded`)
    defence: ReasoningDefence | None = None

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def throttled(self) -> bool:
        return self.action == "throttle"

    def block_message(self, account_id: str) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"Account {account_id} is blocked by the provider's usage policy{why}. "
            "If you believe this is a mistake, contact the provider's support to review the account."
        )


ALLOW = Decision("allow")


@dataclass(frozen=True)
class Override:
    account_id: str
    action: str
    ts: datetime
    by: str = ""
    note: str = ""


def _first_reason(reasons: Any) -> str | None:
    if reasons is None:
        return None
    if isinstance(reasons, str):
        try:
            parsed = json.loads(reasons)
        except ValueError:
            return reasons[:200]
        reasons = parsed
    if isinstance(reasons, list) and reasons:
        return str(reasons[0])[:200]
    return None


class Policy:
    """An in-memory map from account to decision, fed by verdicts and overrides.

    Reads are lock-free dictionary lookups on the request path; updates replace whole entries.
    """

    def __init__(self, degrade: DegradeConfig | None = None) -> None:
        self.degrade = degrade or DegradeConfig()
        self._verdicts: dict[str, Decision] = {}
        # The last few verdict actions each account went through, oldest first (an audit trail
        # of escalation: monitor -> throttle -> block).
        self._history: dict[str, list[str]] = {}
        self._overrides: dict[str, Decision] = {}
        self._campaigns: dict[str, str] = {}
        self._lock = threading.Lock()

    def _make(self, action: str, source: Literal["verdict", "override"], campaign: str | None, reason: str | None) -> Decision:
        act: Action = "allow" if action == "benign" else action  # type: ignore[assignment]
        defence = self.degrade.defence_for(act)
        return Decision(act, source, campaign, reason, defence is not None, defence)

    def apply_verdicts(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Replace verdicts for the accounts in `rows` (verdicts-table rows); return how many changed."""
        changed = 0
        with self._lock:
            for r in rows:
                acc = r.get("account_id")
                action = r.get("action") or "allow"
                if not acc or action not in ACTIONS:
                    continue
                camp = r.get("campaign_id") or None
                new = self._make(str(action), "verdict", camp, _first_reason(r.get("reasons")))
                old = self._verdicts.get(acc)
                if old != new:
                    changed += 1
                    self._verdicts[acc] = new
                    if old is None or old.action != new.action:
                        trail = self._history.setdefault(acc, [])
                        trail.append(new.action)
                        del trail[:-_HISTORY]
                if camp:
                    self._campaigns[acc] = camp
                else:
                    self._campaigns.pop(acc, None)
        return changed

    def verdict_counts(self) -> dict[str, int]:
        """How many accounts each verdict action applies to now (overrides not counted)."""
        with self._lock:
            out: dict[str, int] = {}
            for d in self._verdicts.values():
                out[d.action] = out.get(d.action, 0) + 1
            return out

    def action_history(self, account_id: str) -> list[str]:
        """The verdict actions the account went through, oldest first (the last few)."""
        with self._lock:
            return list(self._history.get(account_id, ()))

    def set_override(self, override: Override) -> None:
        if override.action not in OVERRIDE_ACTIONS:
            raise ConfigError(
                f"Override action {override.action!r} for account {override.account_id} is not one of "
                f"{', '.join(OVERRIDE_ACTIONS)}."
            )
        reason = f"manual override by {override.by}" if override.by else "manual override"
        if override.note:
            reason += f": {override.note}"
        with self._lock:
            camp = self._campaigns.get(override.account_id)
            self._overrides[override.account_id] = self._make(override.action, "override", camp, reason)

    def decide(self, account_id: str) -> Decision:
        """The decision for `account_id`: its override, else its verdict, else allow."""
        d = self._overrides.get(account_id)
        if d is not None:
            return d
        return self._verdicts.get(account_id, ALLOW)

    def campaign_of(self, account_id: str) -> str | None:
        return self._campaigns.get(account_id)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Current decisions of every account that has a verdict or an override."""
        out: dict[str, dict[str, Any]] = {}
        for acc in set(self._verdicts) | set(self._overrides):
            d = self.decide(acc)
            out[acc] = {
                "action": d.action,
                "source": d.source,
                "campaign_id": d.campaign_id or self._campaigns.get(acc),
                "reason": d.reason,
            }
        return out


_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def strip_think(text: str) -> tuple[str, str]:
    """Split inline `<think>...</think>` reasoning out of `text`: (answer, reasoning)."""
    if "<think>" not in text:
        return text, ""
    parts: list[str] = []

    def grab(m: re.Match[str]) -> str:
        parts.append(m.group(0).removeprefix("<think>").removesuffix("</think>"))
        return ""

    answer = _THINK.sub(grab, text)
    return answer.lstrip(), "\n".join(parts)


class ThinkFilter:
    """Streaming version of `strip_think`: feed text deltas, get the answer part back."""

    def __init__(self) -> None:
        self._buf = ""
        self._inside = False
        self.reasoning: list[str] = []

    def feed(self, delta: str) -> str:
        self._buf += delta
        out: list[str] = []
        while True:
            tag = "</think>" if self._inside else "<think>"
            i = self._buf.find(tag)
            if i >= 0:
                (self.reasoning if self._inside else out).append(self._buf[:i])
                self._buf = self._buf[i + len(tag):]
                self._inside = not self._inside
                continue
            # keep a possible partial tag at the end
            keep = 0
            for k in range(1, len(tag)):
                if self._buf.endswith(tag[:k]):
                    keep = k
            emit, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep:]
            (self.reasoning if self._inside else out).append(emit)
            return "".join(out)

    def finish(self) -> str:
        rest, self._buf = self._buf, ""
        if self._inside:
            self.reasoning.append(rest)
            return ""
        return rest
