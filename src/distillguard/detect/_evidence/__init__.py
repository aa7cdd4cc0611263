"""Evidence modules: each kind of evidence the graph detector weighs, with its own table.

See `_base` for the contract, `_registry` for the modules and `detect/_decision.py` for how
their tables are combined.
"""

from distillguard.detect._evidence._base import (
    ROLE_COLUMNS,
    AccountEvidence,
    CampaignContext,
    CampaignEvidence,
    CarrierContext,
    CarrierEvidence,
    Context,
    Evidence,
    EvidenceTable,
    KeyContext,
    LinkEvidence,
    Role,
    SoloContext,
    SoloEvidence,
)
from distillguard.detect._evidence._carrying import CampaignCarriers
from distillguard.detect._evidence._cohort import CohortEvidence, cohort_reason
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
from distillguard.detect._evidence._registry import EVIDENCE_MODULES, build_modules
from distillguard.detect._evidence._small import SmallCampaigns
from distillguard.detect._evidence._synced import SyncedClock
from distillguard.detect._evidence._thin import ThinAccount

__all__ = [
    "EVIDENCE_MODULES",
    "ROLE_COLUMNS",
    "AccountEvidence",
    "AddressLink",
    "CampaignCarriers",
    "CampaignContext",
    "CampaignEvidence",
    "CarrierContext",
    "CarrierEvidence",
    "CohortEvidence",
    "Context",
    "EmailLink",
    "Evidence",
    "EvidenceTable",
    "FreshAccount",
    "KeyContext",
    "LinkEvidence",
    "PartnerMatch",
    "PaymentLink",
    "RareEvidence",
    "Role",
    "SignupLink",
    "SmallCampaigns",
    "SoloContext",
    "SoloEvidence",
    "SyncedClock",
    "TemplateLink",
    "ThinAccount",
    "build_modules",
    "cohort_reason",
]
