"""Watermark parameters: one validated value object, stored in the key file."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from distillguard._errors import ConfigError

Scheme = Literal["kgw", "gumbel"]
LexicalContext = Literal["words", "stable"]
LEXICAL_CONTEXTS: tuple[LexicalContext, ...] = ("words", "stable")
# key files written before `lexical_context` existed marked with the two previous words
LEGACY_LEXICAL_CONTEXT: LexicalContext = "words"


@dataclass(frozen=True)
class WatermarkConfig:
    """How text is marked and scored.

    Attributes:
        scheme: "kgw" (green list, Kirchenbauer et al. 2023) or "gumbel"
            (distortion-free Gumbel-max sampling, Aaronson 2022) for the global layer.
        gamma: green-list fraction (kgw and the account layer).
        delta: logit bias added to green tokens (kgw global layer).
        context_width: h, the number of preceding tokens that seed each decision.
        self_hash: seed with the min-hash over the window *and the candidate token*
            (Kirchenbauer et al.'s "selfhash"; robust to reordering inside the window).
        account_delta: logit bias of the per-account layer; 0 turns it off.
        account_length: L, symbols in an account's code word.
        account_alphabet: q, values each symbol takes (q**L code words).
        min_scored: fewer unique scored tuples than this is "not enough to decide".
        controls: random-key controls scored beside the real key.
        skip_repeated: leave a step unmarked when its context window already occurred
            in the same sequence (keeps Gumbel sampling from looping; the detector
            scores each tuple once anyway).
        lexical_context: what keys a lexical choice besides its id: "stable" (the two
            previous words that no choice writes, so rewording the choices leaves every other
            choice's context) or "words" (the two
            previous words, as key files without this field were marked).
    """

    scheme: Scheme = "kgw"
    gamma: float = 0.25
    delta: float = 2.0
    context_width: int = 1
    self_hash: bool = False
    account_delta: float = 2.0
    account_length: int = 8
    account_alphabet: int = 512
    min_scored: int = 25
    controls: int = 8
    skip_repeated: bool = True
    lexical_context: LexicalContext = "stable"

    def __post_init__(self) -> None:
        problems = []
        if self.scheme not in ("kgw", "gumbel"):
            problems.append(f"scheme must be 'kgw' or 'gumbel', not {self.scheme!r}")
        if not 0.0 < self.gamma < 1.0:
            problems.append(f"gamma must lie strictly between 0 and 1, not {self.gamma}")
        if self.delta < 0 or self.account_delta < 0:
            problems.append("delta and account_delta must be >= 0")
        if self.context_width < 1:
            problems.append(f"context_width must be >= 1, not {self.context_width}")
        if self.account_length < 1 or self.account_alphabet < 2:
            problems.append("account_length must be >= 1 and account_alphabet >= 2")
        if self.min_scored < 1 or self.controls < 0:
            problems.append("min_scored must be >= 1 and controls >= 0")
        if self.lexical_context not in LEXICAL_CONTEXTS:
            problems.append(f"lexical_context must be one of {LEXICAL_CONTEXTS}, not {self.lexical_context!r}")
        if problems:
            raise ConfigError("Invalid watermark configuration: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WatermarkConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"Unknown watermark settings {unknown}; known ones are {sorted(known)}."
            )
        return cls(**{"lexical_context": LEGACY_LEXICAL_CONTEXT, **data})
