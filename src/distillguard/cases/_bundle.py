"""A campaign's indicators as a STIX 2.1 bundle to share with other providers.

Which values are shared, and the patterns and hashes they take, are described in
`distillguard.share` (the receiving side runs the same definitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distillguard._errors import ConfigError
from distillguard.cases._casedata import KIND_LABELS, CaseStore
from distillguard.share import pattern_for, share_hash


@dataclass(frozen=True)
class SharedValue:
    """One value a campaign would share, with how specific it is to the campaign."""

    kind: str
    value: str  # as shared: hashed for payment and e-mail
    members: int
    accounts: int
    label: str  # what an analyst reads (never the clear payment fingerprint)


def campaign_indicators(
    store: CaseStore,
    campaign_id: str,
    *,
    min_specificity: float = 0.9,
    max_outside: int = 2,
    max_per_kind: int = 500,
) -> list[SharedValue]:
    """The values of a campaign worth sharing: templates plus specific attributes.

    A value is shared only when at least `min_specificity` of the accounts that use it are
    members and at most `max_outside` accounts outside the campaign use it, so that what a
    partner blocks on is what this campaign alone does here.

    Args:
        store: the pre-aggregated log and verdicts.
        campaign_id: the campaign.
        min_specificity: least share of a value's users that must be members.
        max_outside: most accounts outside the campaign that may use a shared value.
        max_per_kind: at most this many values of each kind (most members first).
    """

    def specific(members: int, users: int) -> bool:
        return users > 0 and members / users >= min_specificity and users - members <= max_outside

    out: list[SharedValue] = []
    seen: set[str] = set()
    # The scan's own templates (when it names them), then mined ones, which partners running
    # distillguard compute the same way; mined ones are checked against the whole log.
    for t in store.templates(campaign_id, limit=max_per_kind):
        if t.source == "detector" and t.fingerprint and t.fingerprint not in seen:
            seen.add(t.fingerprint)
            out.append(
                SharedValue(
                    "template",
                    t.fingerprint,
                    t.accounts,
                    t.accounts,
                    f"{t.template_id}: {t.example[:80]}",
                )
            )
    mined = [t for t in store.mined_templates(campaign_id, limit=max_per_kind) if t.accounts >= 2]
    users = store.template_users([t.fingerprint for t in mined if t.fingerprint])
    for t in mined:
        fp = t.fingerprint
        if fp and fp not in seen and specific(t.accounts, users.get(fp, t.accounts)):
            seen.add(fp)
            out.append(
                SharedValue(
                    "template",
                    fp,
                    t.accounts,
                    users.get(fp, t.accounts),
                    f"{t.template_id}: {t.example[:80]}",
                )
            )
    kinds = ("ip", "net24", "payment", "email", "user_agent")
    attrs = store.attributes(campaign_id, kinds=kinds, min_members=1, limit=100_000)
    nets = {
        a.value
        for a in attrs
        if a.kind == "net24" and specific(a.members, a.accounts) and a.members >= 2
    }
    taken: dict[str, int] = {}
    for a in attrs:
        if not specific(a.members, a.accounts) or taken.get(a.kind, 0) >= max_per_kind:
            continue
        if a.kind == "ip" and a.value.rsplit(".", 1)[0] + ".0/24" in nets:
            continue  # the shared range covers it
        # A single address used by a single member says little; ranges and agents need two.
        if a.kind in ("ip", "net24", "user_agent") and a.members < 2:
            continue
        taken[a.kind] = taken.get(a.kind, 0) + 1
        if a.kind in ("payment", "email"):
            out.append(
                SharedValue(
                    a.kind,
                    share_hash(a.kind, a.value),
                    a.members,
                    a.accounts,
                    f"{KIND_LABELS[a.kind]} (hashed)",
                )
            )
        else:
            out.append(SharedValue(a.kind, a.value, a.members, a.accounts, a.value))
    return out


def export_bundle(
    store: CaseStore,
    campaign_id: str,
    *,
    producer: str = "distillguard",
    min_specificity: float = 0.9,
    max_outside: int = 2,
    now: datetime | None = None,
) -> Any:
    """A STIX 2.1 bundle of one campaign's indicators.

    Args:
        store: the pre-aggregated log and verdicts.
        campaign_id: the campaign to share.
        producer: the name of the sharing organisation (the bundle's `identity`).
        min_specificity: see `campaign_indicators`.
        max_outside: see `campaign_indicators`.
        now: the time stamped on the objects (now when None).

    Returns:
        A `stix2.Bundle`; `bundle.serialize(pretty=True)` is the file to send.

    Raises:
        ConfigError: the verdicts have no such campaign.
    """
    import stix2

    campaign = store.campaign(campaign_id)
    if campaign is None:
        raise ConfigError(
            f"The verdicts have no campaign {campaign_id!r}; see the campaigns table or the "
            "console for the ids."
        )
    stamp = now or datetime.now(UTC)
    identity = stix2.Identity(
        name=producer, identity_class="organization", created=stamp, modified=stamp
    )
    first = campaign.first_ts or stamp
    sdo = stix2.Campaign(
        name=f"distillation campaign {campaign_id}",
        description="; ".join(campaign.reasons) or "Coordinated accounts harvesting model outputs.",
        first_seen=first,
        last_seen=max(campaign.last_ts or first, first),
        objective="Harvest model outputs to train another model (distillation).",
        created_by_ref=identity.id,
        created=stamp,
        modified=stamp,
        allow_custom=True,
        x_distillguard_campaign_id=campaign_id,
        x_distillguard_accounts=campaign.accounts,
        x_distillguard_events=campaign.events,
        x_distillguard_score=round(campaign.score, 4),
    )
    objects: list[Any] = [identity, sdo]
    for v in campaign_indicators(
        store, campaign_id, min_specificity=min_specificity, max_outside=max_outside
    ):
        ind = stix2.Indicator(
            name=f"{KIND_LABELS[v.kind]} of distillation campaign {campaign_id}",
            description=f"{v.label}; used by {v.members} campaign accounts of "
            f"{v.accounts} accounts seen.",
            pattern=pattern_for(v.kind, v.value),
            pattern_type="stix",
            valid_from=campaign.first_flagged_ts or first,
            indicator_types=["malicious-activity"],
            created_by_ref=identity.id,
            created=stamp,
            modified=stamp,
            confidence=int(round(100 * min(1.0, campaign.score))),
            allow_custom=True,
            x_distillguard_kind=v.kind,
        )
        rel = stix2.Relationship(
            ind, "indicates", sdo, created_by_ref=identity.id, created=stamp, modified=stamp
        )
        objects += [ind, rel]
    return stix2.Bundle(objects=objects, allow_custom=True)


def write_bundle(bundle: Any, path: str | Path) -> Path:
    """Write a bundle as pretty JSON; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(bundle.serialize(pretty=True), encoding="utf-8")
    return out
