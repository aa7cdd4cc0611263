"""The kinds of link: shared keys that tie accounts into a campaign's graph.

Each is one module (`link.<kind>`, config `[evidence.<kind>]`). A key is a candidate when at
least `links.min_accounts` accounts share it and its pooled traffic is harvest-like
(`links.suspicious_mean_harvest`); a module may add a test of its own (addresses do).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from distillguard.detect._evidence._base import KeyContext, LinkEvidence
from distillguard.detect._state import IP_CHURN_FULL, LINK_KINDS, TEMPLATE_KINDS


class AddressLink(LinkEvidence):
    """A shared address. A NAT (classroom, office) shows about one address per account behind
    it; a proxy pool rotates them: only an address whose accounts churn
    (`nat_max_churn`), or whose traffic is very harvest-like (`proxy_min_key_harvest`), links."""

    name = "link.ip"
    section = "ip"
    kinds: ClassVar[tuple[str, ...]] = ("ip",)
    infrastructure = True

    def suspicious(self, keys: KeyContext) -> np.ndarray:
        c = self.cfg.evidence.ip
        n = len(keys.candidate)
        is_ip = keys.state.sid_link[:n] == LINK_KINDS.index("ip")
        # Mean addresses per account behind the address.
        addresses = keys.churn * IP_CHURN_FULL + 1
        ok = ~is_ip | (addresses >= c.nat_max_churn) | (keys.key_harvest >= c.proxy_min_key_harvest)
        out: np.ndarray = keys.candidate & ok
        return out


class TemplateLink(LinkEvidence):
    """A shared prompt template or system prompt (its head, tail and system facets are one
    kind: facets of one signal, the prompt). Strangers share popular prompts, so a template
    never decides a block on its own (`infrastructure` is False)."""

    name = "link.template"
    section = "template"
    kinds: ClassVar[tuple[str, ...]] = TEMPLATE_KINDS
    infrastructure = False


class PaymentLink(LinkEvidence):
    """A shared payment fingerprint (one card behind several accounts)."""

    name = "link.payment"
    section = "payment"
    kinds: ClassVar[tuple[str, ...]] = ("payment",)
    infrastructure = True


class EmailLink(LinkEvidence):
    """A shared e-mail domain; a domain most accounts use (a big webmail provider) never
    becomes a key (see `_state`, `COMMON_EMAIL_SHARE`)."""

    name = "link.email"
    section = "email"
    kinds: ClassVar[tuple[str, ...]] = ("email",)
    infrastructure = True


class SignupLink(LinkEvidence):
    """Accounts opened in the same hour through the same channel and put to use within a month
    (see `_state`, `RECENT_SIGNUP_DAYS`): a burst of sign-ups for one purpose. Strangers sign
    up in the same hour too, so it never decides a block on its own."""

    name = "link.created"
    section = "created"
    kinds: ClassVar[tuple[str, ...]] = ("created",)
    infrastructure = False
