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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from distillguard._errors import ConfigError
from distillguard.enforce._programs import (
    CODE_DEFENCES,
    CodeDefence,
    ProgramFilter,
    equivalent_programs,
)
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
        code: what the code blocks of a degraded (or throttled and degraded) account's answer
            become: `unchanged`, or `equivalent-program` (`_programs.py`: each Python block in an
            equivalent form drawn per answer).
    """

    max_tokens_cap: int = 256
    reasoning: ReasoningDefence = "withhold"
    throttle_reasoning: ReasoningDefence | None = None
    throttle_degrades: bool = True
    antidistill_fallback: TextDefence = "withhold"
    antidistill_lam: float = 0.1
    code: CodeDefence = "unchanged"

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
        if self.code not in CODE_DEFENCES:
            problems.append(f"code must be one of {', '.join(CODE_DEFENCES)}, got {self.code!r}")
        if problems:
            raise ConfigError("Invalid degrade settings: " + "; ".join(problems) + ".")

    def defence_for(self, action: str) -> ReasoningDefence | None:
        """The reasoning defence an account under `action` gets; None: its answers are untouched."""
        if action == "degrade":
            return self.reasoning
        if action == "throttle" and self.throttle_degrades:
            return self.throttle_reasoning or self.reasoning
        return None

    def programs_for(self, decision: Decision) -> bool:
        """Whether `decision`'s answers get their programs rewritten (`code`): degraded ones only."""
        return decision.degraded and self.code == "equivalent-program"

    def answer_filter(self, decision: Decision) -> ThinkFilter:
        """The stream filter of a degraded answer's text: inline reasoning out, and its
        programs rewritten where `code` says so."""
        return ThinkFilter(ProgramFilter() if self.programs_for(decision) else None)

    def served_text(self, decision: Decision, text: str) -> str:
        """A degraded answer's text (its inline reasoning already out) as served: its programs
        rewritten where `code` says so."""
        return equivalent_programs(text) if self.programs_for(decision) else text

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
    # The declared end user (a reseller's customer) this decision is about, when it is one
    # judged apart from its account (`end_user_verdicts`).
    end_user: str | None = None
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
        if self.end_user is not None:
            return (
                f"End user {self.end_user!r} of account {account_id} is blocked by the provider's "
                f"usage policy{why}; the account's other end users are served. If you believe this "
                "is a mistake, contact the provider's support to review it."
            )
        return (
            f"Account {account_id} is blocked by the provider's usage policy{why}. "
            "If you believe this is a mistake, contact the provider's support to review the account."
        )


ALLOW = Decision("allow")
# Accounts whose first-request match is held at once; past this the held matches are dropped
# (each such account is checked again on its next request).
MAX_HELD_FIRST_MATCHES = 100_000
_RANK = {a: i for i, a in enumerate(ACTIONS)}


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
        # End users judged apart (`end_user_verdicts`): (account, end user) -> decision, and the
        # accounts whose own flag applies to their flagged end users only (`end_users_apart`).
        self._end_users: dict[tuple[str, str], Decision] = {}
        self._apart: set[str] = set()
        # Flagged campaigns' keys (kind, key hash) -> the campaign or account they name, that a
        # new account's request is checked against (`first_request`), and what a match does.
        self._campaign_keys: Mapping[tuple[str, int], str] = {}
        self._first_action: str = "throttle"
        self._matcher: Any = None
        # Accounts whose request matched them (`first_request`), held until their first verdict
        # or override: the account stays as decided instead of flipping with each request's
        # content while the detector has not judged it yet.
        self._first_matched: dict[str, Decision] = {}
        self._lock = threading.Lock()

    def _make(self, action: str, source: Literal["verdict", "override"], campaign: str | None, reason: str | None) -> Decision:
        act: Action = "allow" if action == "benign" else action  # type: ignore[assignment]
        defence = self.degrade.defence_for(act)
        return Decision(act, source, campaign, reason, degraded=defence is not None, defence=defence)

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
                self._first_matched.pop(acc, None)
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
                if r.get("end_users_apart"):
                    self._apart.add(acc)
                else:
                    self._apart.discard(acc)
        return changed

    def apply_end_user_verdicts(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Replace the decisions of the (account, end user) pairs in `rows` (end_user_verdicts
        rows); return how many changed. `allow` rows are dropped (the account decides)."""
        changed = 0
        with self._lock:
            for r in rows:
                acc, user, action = r.get("account_id"), r.get("end_user"), r.get("action") or "allow"
                if not acc or user is None or action not in ACTIONS:
                    continue
                key = (str(acc), str(user))
                new = None if action == "allow" else replace(
                    self._make(str(action), "verdict", r.get("campaign_id") or None,
                               _first_reason(r.get("reasons"))), end_user=key[1])
                if self._end_users.get(key) != new:
                    changed += 1
                    if new is None:
                        self._end_users.pop(key, None)
                    else:
                        self._end_users[key] = new
        return changed

    def set_campaign_keys(self, keys: Any, action: str = "throttle") -> None:
        """Replace the flagged campaigns' keys a new account's first request is checked against
        (`distillguard.detect`'s `CampaignKeys`: a `keys` mapping and a `match` method)."""
        if action not in ACTIONS:
            raise ConfigError(f"First-request action {action!r} is not one of {', '.join(ACTIONS)}.")
        new = dict(keys.keys)
        if new != self._campaign_keys or action != self._first_action:
            self._first_matched = {}  # matched on keys, or with an action, that no longer hold
        self._matcher = keys
        self._campaign_keys = new
        self._first_action = action

    @property
    def checks_first_requests(self) -> bool:
        return bool(self._campaign_keys)

    def match_first_request(self, keys: list[tuple[str, int]]) -> list[tuple[str, int]] | None:
        """The campaign keys among a request's keys when they stop it, else None."""
        matcher = self._matcher
        return None if matcher is None else matcher.match(keys)  # type: ignore[no-any-return]

    def first_request(self, account_id: str, matched: Iterable[tuple[str, int]] | None) -> Decision | None:
        """The decision for a request of an account with no verdict yet whose keys matched a
        flagged campaign's (the keys, as `distillguard.detect`'s `CampaignKeys.match` gives
        them), else None."""
        found = list(matched or ())
        if not found:
            return None
        kinds = ", ".join(sorted({kind for kind, _ in found}))
        who = self._campaign_keys.get(found[0], "")
        why = f"its first request carries keys of flagged campaign traffic ({kinds}; as account {who})"
        decision = self._make(self._first_action, "verdict", None, why)
        if len(self._first_matched) >= MAX_HELD_FIRST_MATCHES:
            self._first_matched = {}
        self._first_matched[account_id] = decision
        return decision

    def held_first_request(self, account_id: str) -> Decision | None:
        """The decision an earlier request of `account_id` matched (`first_request`), held
        until the account's first verdict or override, else None."""
        return self._first_matched.get(account_id)

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
            self._first_matched.pop(override.account_id, None)
            self._overrides[override.account_id] = self._make(override.action, "override", camp, reason)

    def decide(self, account_id: str, end_user: str | None = None) -> Decision:
        """The decision for a request of `account_id` naming `end_user` (None: none).

        The account's override wins, else its verdict. A declared end user judged apart makes
        it stricter, never milder (the end user is the client's to choose), except on an
        account whose flag applies to its flagged end users only (`end_users_apart`: a
        reseller carrying a campaign through a few customers): there a request naming another
        end user is served, and one naming none keeps the account's verdict.
        """
        d = self._overrides.get(account_id)
        if d is not None:
            return d
        d = self._verdicts.get(account_id, ALLOW)
        if end_user is None:
            return d
        e = self._end_users.get((account_id, end_user))
        if account_id in self._apart:
            return e if e is not None else ALLOW
        if e is not None and _RANK[e.action] > _RANK[d.action]:
            return e
        return d

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
    """Streaming version of `strip_think`: feed text deltas, get the answer part back, passed
    through `programs` when given (`equivalent-program`)."""

    def __init__(self, programs: ProgramFilter | None = None) -> None:
        self._buf = ""
        self._inside = False
        self.reasoning: list[str] = []
        self.programs = programs

    def feed(self, delta: str) -> str:
        out = self._feed(delta)
        return self.programs.feed(out) if self.programs is not None and out else out

    def _feed(self, delta: str) -> str:
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
            rest = ""
        if self.programs is not None:
            rest = (self.programs.feed(rest) if rest else "") + self.programs.finish()
        return rest
