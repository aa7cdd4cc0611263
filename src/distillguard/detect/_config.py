"""The detector's configuration: thresholds and weights, versioned, loaded from TOML.

The shipped defaults live in `detect_config.toml` next to this module; copy it, edit it and pass
it with `distillguard scan --config FILE`. Bump `version` whenever a default changes, so that a
verdict can always be traced to the thresholds that produced it.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillguard._errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplayConfig(_Strict):
    cadence_minutes: float = Field(default=15.0, gt=0)


class HarvestWeights(_Strict):
    """Weights of the per-account harvest profile (each feature is in [0, 1])."""

    volume: float = 1.6
    single_turn: float = 0.6
    elicitation: float = 1.6
    focus: float = 0.8
    template: float = 0.9
    sdk: float = 1.0
    night: float = 0.8
    capped: float = 1.5
    release: float = 0.8
    new_account: float = 0.4
    risky_channel: float = 0.4
    unverified: float = 0.3
    ip_churn: float = 0.8
    bias: float = -4.2
    volume_floor_per_day: float = 20.0
    volume_full_per_day: float = 300.0
    min_events: int = 5


class LinkConfig(_Strict):
    """When shared keys link accounts, and how much evidence joins an account to a campaign."""

    min_accounts: int = 5
    min_link_families: float = 2.0
    suspicious_mean_harvest: float = 0.45
    member_min_elicitation: float = 0.5


class _WeightedEvidenceConfig(_Strict):
    """An evidence module that can be turned off, and the weight of what it finds."""

    enabled: bool = True
    weight: float = Field(default=1.0, ge=0)


# The own-asks gate (`_own_asks`): a key strangers hold by chance counts only for an account
# whose share of requests asking for reasoning, grades or training data, or mean P(distill), is
# at least this. One default for the weak links (`min_own_asks`) and rarity (`key_min_share`).
OWN_ASKS_MIN_SHARE = 0.25


class LinkKindConfig(_WeightedEvidenceConfig):
    """One kind of link (an evidence module named `link.<kind>`).

    `min_own_asks` (0: off): the link counts only for an account whose own asks are at least
    this (`_own_asks.weak_key_counts`), once it has sent `own_asks_min_events` requests (fewer
    say too little about what it asks)."""

    min_own_asks: float = Field(default=0.0, ge=0, le=1)
    own_asks_min_events: int = Field(default=5, ge=1)


class WeakLinkConfig(LinkKindConfig):
    """A kind of link strangers hold by chance (an e-mail domain, a sign-up hour): it counts
    only for an account that itself asks what a harvester asks."""

    min_own_asks: float = Field(default=OWN_ASKS_MIN_SHARE, ge=0, le=1)


class AddressLinkConfig(LinkKindConfig):
    """Shared addresses: a proxy pool links, a NAT (classroom, office) does not."""

    nat_max_churn: float = 1.5
    proxy_min_key_harvest: float = Field(default=0.6, ge=0, le=1)


class CorroborationConfig(_WeightedEvidenceConfig):
    """Evidence that adds its weight to an account's links, never links on its own."""


class FreshConfig(CorroborationConfig):
    """A new, unverified account that keeps asking for reasoning, grades or training data."""

    min_harvest: float = 0.55
    min_elicitation: float = 0.3


class SyncConfig(CorroborationConfig):
    """Accounts that claim many countries but keep one clock on a suspicious key."""

    min_events: int = 3
    min_utc: float = 0.5
    min_gap: float = 0.2
    every_minutes: float = Field(default=60.0, ge=0)


class ThinConfig(_Strict):
    """Accounts with fewer than `harvest.min_events` requests need more evidence to join,
    unless their links lead into keys a flagged campaign holds (`held_*`; 0 kinds: off)."""

    enabled: bool = True
    min_link_families: float = 3.0
    held_min_kinds: int = Field(default=1, ge=0)
    held_min_accounts: int = Field(default=5, ge=1)
    held_min_share: float = Field(default=0.8, gt=0, le=1)
    held_min_own_asks: float = Field(default=0.5, ge=0, le=1)


class CarrierConfig(_Strict):
    """An account outside a blocked campaign that sends its templates (a reseller carrying it)."""

    enabled: bool = True
    min_templates: int = 10
    min_coverage: float = 0.25
    every_minutes: float = Field(default=240.0, ge=0)


class RarityConfig(_Strict):
    """Evidence weighed by how rare it is among the log's established accounts (`_rarity`)."""

    enabled: bool = True
    max_p: float = Field(default=1e-4, gt=0, lt=1)
    established_days: float = Field(default=14.0, ge=0)
    min_events: int = Field(default=5, ge=1)
    min_null_accounts: int = Field(default=200, ge=1)
    card_min_accounts: int = Field(default=5, ge=2)
    key_min_share: float = Field(default=OWN_ASKS_MIN_SHARE, ge=0, le=1)
    every_minutes: float = Field(default=15.0, ge=0)


class CohortConfig(_Strict):
    """Many accounts with one scripted task-pool fingerprint, tested as a group (`_cohort`)."""

    enabled: bool = True
    min_events: int = Field(default=3, ge=1)
    min_single_share: float = Field(default=0.9, ge=0, le=1)
    min_frame_share: float = Field(default=0.9, ge=0, le=1)
    edge_max_share: float = Field(default=0.02, ge=0, le=1)
    min_distill: float = Field(default=0.5, ge=0, le=1)
    topic_min_share: float = Field(default=0.3, ge=0, le=1)
    max_p: float = Field(default=1e-6, gt=0, lt=1)
    min_accounts: int = Field(default=20, ge=2)
    stay_slack: float = Field(default=0.2, ge=0, le=1)
    every_minutes: float = Field(default=15.0, ge=0)
    public_min_overlap: float = Field(default=0.1, gt=0, le=1)
    public_min_items: int = Field(default=10, ge=1)
    max_item_partners: int = Field(default=64, ge=1)
    min_pool_similarity: float = Field(default=0.4, ge=-1, le=1)
    max_pool_outliers: float = Field(default=0.1, ge=0, le=1)
    frame_min_members: int = Field(default=5, ge=1)
    frame_min_share: float = Field(default=0.8, gt=0, le=1)
    early_min_events: int = Field(default=2, ge=1)
    interim: bool = True
    interim_react_seconds: float = Field(default=10.0, ge=0)


class EvidenceConfig(_Strict):
    """One section per evidence module (see `_evidence`)."""

    ip: AddressLinkConfig = Field(default_factory=AddressLinkConfig)
    template: LinkKindConfig = Field(default_factory=LinkKindConfig)
    payment: LinkKindConfig = Field(default_factory=LinkKindConfig)
    email: WeakLinkConfig = Field(default_factory=WeakLinkConfig)
    created: WeakLinkConfig = Field(default_factory=WeakLinkConfig)
    fresh: FreshConfig = Field(default_factory=FreshConfig)
    partner: CorroborationConfig = Field(default_factory=CorroborationConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    thin: ThinConfig = Field(default_factory=ThinConfig)
    carriers: CarrierConfig = Field(default_factory=CarrierConfig)
    rarity: RarityConfig = Field(default_factory=RarityConfig)
    cohort: CohortConfig = Field(default_factory=CohortConfig)


class CellConfig(_Strict):
    """Small campaigns tied by one harvest-like template and their carriers (see `_cells`)."""

    enabled: bool = True
    min_key_harvest: float = 0.7
    min_key_events: int = Field(default=100, ge=1)
    min_member_harvest: float = 0.6
    max_tie_accounts: int = Field(default=20, ge=2)
    carrier_min_events: int = Field(default=100, ge=20)  # pairs below 20 requests are not kept
    carrier_min_share: float = Field(default=0.25, ge=0, le=1)
    every_minutes: float = Field(default=60.0, ge=0)
    # One direct account and its carrier (see `_cells`, "solo").
    solo_enabled: bool = True
    solo_min_key_harvest: float = 0.75
    solo_min_key_events: int = Field(default=30, ge=20)  # pairs below 20 requests are not kept
    solo_max_key_accounts: int = Field(default=6, ge=2)
    solo_max_key_strangers: int = Field(default=1, ge=0)
    solo_min_carrier_share: float = Field(default=0.8, gt=0.5, le=1)
    solo_min_carrier_part: float = Field(default=0.25, gt=0, le=1)
    solo_max_carrier_focus: float = Field(default=0.15, ge=0, le=1)
    solo_min_dilution: float = Field(default=0.05, ge=0)
    solo_min_diluted_share: float = Field(default=0.6, gt=0.5, le=1)
    solo_max_diluted_focus: float = Field(default=0.2, ge=0, le=1)
    solo_min_content_contrast: float = Field(default=0.3, gt=0, le=1)
    solo_max_contrast_focus: float = Field(default=0.5, ge=0, lt=1)
    solo_min_direct_harvest: float = 0.6
    solo_min_direct_focus: float = Field(default=0.03, ge=0)
    solo_mild_direct_harvest: float = 0.4


class ActionConfig(_Strict):
    block_campaign_score: float = 0.75
    throttle_campaign_score: float = 0.55
    min_campaign_accounts: int = 5
    min_member_harvest: float = 0.36
    monitor_harvest: float = 0.6
    block_after_throttle_minutes: float = Field(default=15.0, ge=0)


class MMDConfig(_Strict):
    """The `mmd` baseline detector (see `_mmd`): windows, calibration, embedding size."""

    window_requests: int = Field(default=20, ge=2)
    min_requests: int = Field(default=5, ge=2)
    window_fpr: float = Field(default=0.003, gt=0, lt=1)
    null_windows: int = Field(default=2000, ge=100)
    components: int = Field(default=256, ge=2)
    seed: int = 2026

    @model_validator(mode="after")
    def _windows(self) -> MMDConfig:
        if self.min_requests > self.window_requests:
            raise ValueError(
                f"mmd.min_requests ({self.min_requests}) must not exceed mmd.window_requests "
                f"({self.window_requests})"
            )
        return self


class EndUserConfig(_Strict):
    """End users inside an account (the v1.1 `end_user` column), judged apart (`_endusers`).

    Each declared end user is a sub-principal (account, end user) of a second detector, fed in
    the account replay; the account's own verdict never depends on it. The number of sub-principals is bounded: any key
    holder can declare a new end user per request."""

    enabled: bool = True
    # Distinct end users judged apart per account (first come); later ones are judged together
    # as the account's overflow (end_user "" in `end_user_verdicts`).
    max_per_account: int = Field(default=5000, ge=1)
    # ... and in all: beyond it, every new end user goes to its account's overflow.
    max_total: int = Field(default=500_000, ge=1)
    # A carrier's flag (an account sending a blocked campaign's templates beside its own
    # traffic) applies to its flagged end users only, when they are at most this share of the
    # end users it declared and it declared one on at least `min_named_share` of its requests.
    apart_max_flagged_share: float = Field(default=0.2, gt=0, le=1)
    apart_min_named_share: float = Field(default=0.95, gt=0, le=1)


class FirstRequestConfig(_Strict):
    """A new account's first request checked against flagged campaigns' keys (`_firstrequest`)."""

    enabled: bool = True
    # A campaign key: used by at least this many throttled or blocked accounts ...
    min_flagged_accounts: int = Field(default=3, ge=1)
    # ... that are at least this share of all the accounts on it.
    min_flagged_share: float = Field(default=0.8, gt=0.5, le=1)
    # ... and by at most this many people: unflagged accounts opened `established_days` or more
    # before with a calm profile (None: not checked; see docs/detection.md, "The first request").
    max_established_accounts: int | None = Field(default=None, ge=0)
    established_days: float = Field(default=14.0, ge=0)
    # An unflagged established account with a harvest profile this high is not counted as a
    # person (a campaign's aged accounts not caught yet).
    people_max_harvest: float = Field(default=0.6, ge=0, le=1)
    # What the gateway does with a matching request.
    action: Literal["monitor", "throttle", "block"] = "throttle"
    # The replay looks for campaign keys at most this often (log time; it reads the shared
    # pairs that changed since its last look); the gateway after each detector step.
    every_minutes: float = Field(default=60.0, ge=0)


class DetectConfig(_Strict):
    version: str = "2026.12.8.1"
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    harvest: HarvestWeights = Field(default_factory=HarvestWeights)
    links: LinkConfig = Field(default_factory=LinkConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    cells: CellConfig = Field(default_factory=CellConfig)
    actions: ActionConfig = Field(default_factory=ActionConfig)
    mmd: MMDConfig = Field(default_factory=MMDConfig)
    end_users: EndUserConfig = Field(default_factory=EndUserConfig)
    first_request: FirstRequestConfig = Field(default_factory=FirstRequestConfig)

    @model_validator(mode="before")
    @classmethod
    def _moved_sections(cls, raw: object) -> object:
        if isinstance(raw, dict) and "rarity" in raw:
            raise ValueError(
                "the [rarity] section is now [evidence.rarity] (an evidence module since config "
                "2026.12.3); rename the section header, its keys are the same")
        return raw


def load_config(path: str | Path | None = None) -> DetectConfig:
    """Load a detector configuration; the shipped defaults when `path` is None."""
    if path is None:
        text = resources.files("distillguard.detect").joinpath("detect_config.toml").read_text()
        where = "the shipped detect_config.toml"
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Detector config {p} does not exist.")
        text = p.read_text()
        where = str(p)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}.") from exc
    try:
        return DetectConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{where}: {loc + ': ' if loc else ''}{first['msg']}.") from exc
