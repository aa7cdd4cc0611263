"""A trace answer: what was scored, the controls, the p-value, the accounts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from distillguard.watermark import Detection


@dataclass
class TraceReport:
    """Combined evidence of one trace; `layers` holds each detection on its own.

    The overall p-value is the smallest layer p-value times the number of layers
    (Bonferroni), so it stays a valid p-value for "not marked with this key".
    """

    subject: str
    layers: list[Detection]
    alpha: float = 1e-6
    notes: list[str] = field(default_factory=list)

    @property
    def p_value(self) -> float:
        return float(10.0**self.log10_p)

    @property
    def log10_p(self) -> float:
        informative = [d for d in self.layers if d.scored_tuples > 0]
        if not informative:
            return 0.0
        best = min(d.log10_p for d in informative)
        return min(0.0, best + math.log10(len(informative)))

    @property
    def scored_tuples(self) -> int:
        return sum(d.scored_tuples for d in self.layers)

    @property
    def enough(self) -> bool:
        return any(d.enough for d in self.layers)

    @property
    def verdict(self) -> str:
        if not self.enough:
            need = ", ".join(f"{d.scheme} {d.scored_tuples}/{d.min_scored}" for d in self.layers)
            return f"not enough scored tokens to decide ({need})"
        if self.p_value <= self.alpha:
            return f"ours: watermarked with this key (p = {self.p_value:.3g})"
        return f"no evidence of this key's watermark (p = {self.p_value:.3g})"

    def accounts(self) -> list[dict[str, Any]]:
        """Accounts found by any layer, each with its best p-value (times the layers)."""
        k = max(1, len(self.layers))
        best: dict[str, float] = {}
        for det in self.layers:
            for a in det.accounts:
                best[a.account_id] = min(best.get(a.account_id, 0.0), a.log10_p)
        rows = []
        for account, lp in sorted(best.items(), key=lambda kv: kv[1]):
            lp = min(0.0, lp + math.log10(k))
            rows.append(
                {
                    "account_id": account,
                    "p_value": 10.0**lp,
                    "log10_p": lp,
                    "attributed": 10.0**lp <= self.alpha,
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "verdict": self.verdict,
            "p_value": self.p_value,
            "log10_p": self.log10_p,
            "alpha": self.alpha,
            "scored_tuples": self.scored_tuples,
            "accounts": self.accounts(),
            "layers": [d.to_json() for d in self.layers],
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        """Human-readable evidence, one fact per line."""
        out = [f"{self.subject}: {self.verdict}"]
        for d in self.layers:
            ctrl = ", ".join(f"{p:.2g}" for p in d.controls) or "none"
            stat = "green tuples" if d.scheme in ("kgw", "open-kgw") else "score"
            if d.weighted:
                stat = "weighted green count"
            out.append(
                f"  layer {d.scheme}/{d.layer} (key v{d.key_version} of {d.versions_tried}): "
                f"{d.scored_tuples} unique tuples scored of {d.tokens_seen} seen "
                f"({d.dropped_repeats} repeats, {d.dropped_prompt} prompt windows dropped); "
                f"{stat} {d.statistic:.1f} vs {d.expected:.1f} expected; "
                f"p = {d.p_value:.3g} (log10 {d.log10_p:.1f}); random-key controls p: {ctrl}"
            )
            if d.candidates:
                out.append(f"    searched {d.candidates} candidate accounts")
        for a in self.accounts():
            tag = "ATTRIBUTED" if a["attributed"] else "weak"
            out.append(f"  account {a['account_id']}: p = {a['p_value']:.3g} ({tag})")
        out.extend(f"  note: {n}" for n in self.notes)
        return out
