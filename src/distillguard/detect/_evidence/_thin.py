"""A thin account (too few requests for a profile of its own) needs more evidence to join.

With fewer than `harvest.min_events` requests, an account's harvest profile is scaled down
and says little, so it joins a campaign only with `[evidence.thin] min_link_families` of
evidence weight instead of `links.min_link_families`.

Unless its links lead into a campaign already flagged: a key that at least
`held_min_accounts` accounts throttled or blocked by the last decision use, and that they are
at least `held_min_share` of themselves and the key's *people* (its unflagged accounts with a
profile of their own) together, is *held* by a campaign (its own proxy, card, template; a
public prompt or a big NAT is mostly people's and never held). Thin accounts do not count
against a key: a campaign's newcomers are thin too. A thin account with suspicious pairs on
held keys of `held_min_kinds` kinds of link (the template facets are one kind), whose own
requests ask what a harvester asks (`held_min_own_asks` of them ask for reasoning, grades or
training data, or their mean P(distill) is that high: `_own_asks`), needs only
`links.min_link_families`, as an account with a profile does: what it would have to show
with more requests, the campaign it links into has shown already, so its first requests are
not served while its profile fills in.
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._config import DetectConfig
from distillguard.detect._evidence._base import AccountEvidence, Context, EvidenceTable
from distillguard.detect._links import FlaggedOnKeys
from distillguard.detect._own_asks import own_asks
from distillguard.detect._state import LINK_KINDS, PAIR_ACCOUNT, PAIR_KEY, PAIR_KIND, TEMPLATE_KINDS

#: Per `LINK_KINDS`: its kind of link (the template facets, facets of one prompt, are one).
LINK_FAMILY = np.array([LINK_KINDS.index(TEMPLATE_KINDS[0]) if k in TEMPLATE_KINDS else i
                        for i, k in enumerate(LINK_KINDS)], np.int64)


class ThinAccount(AccountEvidence):
    """Sets the evidence weight each account needs to join (`need`)."""

    name = "thin"
    section = "thin"
    role = "requirement"
    columns = {
        "need": "the evidence weight the account needs to join a campaign",
        "thin": "fewer than harvest.min_events requests",
        "held": "a thin account linked into keys a flagged campaign holds (needs no more than others)",
    }

    def __init__(self, cfg: DetectConfig) -> None:
        super().__init__(cfg)
        self.on_keys = FlaggedOnKeys()
        self.people_on_keys = FlaggedOnKeys()

    def assess(self, ctx: Context) -> EvidenceTable:
        thin = ~ctx.established
        held = thin & self._held_links(ctx, thin)
        need = np.where(thin & ~held, self.cfg.evidence.thin.min_link_families,
                        self.cfg.links.min_link_families)
        return self.table(need=need, thin=thin, held=held)

    def _held_links(self, ctx: Context, thin: np.ndarray) -> np.ndarray:
        """Per account: among `thin`, suspicious pairs on held keys of `held_min_kinds` kinds."""
        c = self.cfg.evidence.thin
        m = len(thin)
        out = np.zeros(m, bool)
        if c.held_min_kinds <= 0 or not len(ctx.pairs):
            return out
        kinds = np.zeros((m, len(LINK_KINDS)), bool)
        for i, family in enumerate(LINK_FAMILY.tolist()):
            kinds[:, family] |= ctx.link_pairs[:m, i] > 0
        # Its few requests must ask what a harvester asks: a person who sent a request or two
        # with a prompt a campaign uses too, from a sign-up hour it shares by chance, does not.
        n = ctx.state.counters["n"][:m]
        asks = own_asks(ctx.features["elicitation"][:m], ctx.state.counters["distill"][:m], n)
        want = thin & (kinds.sum(axis=1) >= c.held_min_kinds) & (asks >= c.held_min_own_asks)
        if not want.any():
            return out
        if not hasattr(self, "people_on_keys"):  # (a checkpoint written before they were kept)
            self.on_keys, self.people_on_keys = FlaggedOnKeys(), FlaggedOnKeys()
        n_keys = len(ctx.suspicious)
        on_key = self.on_keys.update(ctx.pairs, n_keys, ctx.flagged, ctx.by_acct)
        people = self.people_on_keys.update(ctx.pairs, n_keys, ctx.established & ~ctx.flagged,
                                            ctx.by_acct)
        held = (ctx.suspicious & (on_key >= c.held_min_accounts)
                & (on_key >= c.held_min_share * (on_key + people)))
        rows = ctx.pairs[ctx.by_acct.select(ctx.pairs, want, ordered=False)]
        rows = rows[held[rows[:, PAIR_KEY]]]
        found = np.zeros((m, len(LINK_KINDS)), bool)
        found[rows[:, PAIR_ACCOUNT], LINK_FAMILY[rows[:, PAIR_KIND]]] = True
        out[:] = want & (found.sum(axis=1) >= c.held_min_kinds)
        return out

    def off(self, m: int) -> EvidenceTable:
        return EvidenceTable(self.name, {"need": np.full(m, self.cfg.links.min_link_families),
                                         "thin": np.zeros(m, bool), "held": np.zeros(m, bool)})
