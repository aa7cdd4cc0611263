"""The evidence modules the detector runs, in the order their reasons are listed."""

from __future__ import annotations

from distillguard.detect._config import DetectConfig
from distillguard.detect._evidence._base import Evidence
from distillguard.detect._evidence._carrying import CampaignCarriers
from distillguard.detect._evidence._cohort import CohortEvidence
from distillguard.detect._evidence._fresh import FreshAccount
from distillguard.detect._evidence._links import (
    AddressLink,
    EmailLink,
    PaymentLink,
    SignupLink,
    TemplateLink,
)
from distillguard.detect._evidence._partner import PartnerMatch
from distillguard.detect._evidence._rare import RareEvidence
from distillguard.detect._evidence._small import SmallCampaigns
from distillguard.detect._evidence._synced import SyncedClock
from distillguard.detect._evidence._thin import ThinAccount

#: Every built-in evidence module. Adding a kind of evidence: a module (a subclass of
#: `LinkEvidence` or `Evidence`), its section in `EvidenceConfig` and the shipped toml, its
#: tests, and its class here.
EVIDENCE_MODULES: tuple[type[Evidence], ...] = (
    TemplateLink,
    AddressLink,
    PaymentLink,
    EmailLink,
    SignupLink,
    FreshAccount,
    PartnerMatch,
    SyncedClock,
    ThinAccount,
    SmallCampaigns,
    CohortEvidence,
    CampaignCarriers,
    RareEvidence,
)


def build_modules(cfg: DetectConfig) -> list[Evidence]:
    """One instance of every module (each detector holds its own: modules keep trackers).

    Raises:
        ValueError: two modules with one name, or a module without a config section.
    """
    modules = [cls(cfg) for cls in EVIDENCE_MODULES]
    names = [m.name for m in modules]
    if len(set(names)) != len(names):
        raise ValueError(f"Evidence module names must be unique; got {names}.")
    for m in modules:
        try:
            _ = m.settings
        except AttributeError:
            raise ValueError(f"Evidence module {m.name!r} reads config section "
                             f"[evidence.{m.section}], which DetectConfig does not have.") from None
    return modules
