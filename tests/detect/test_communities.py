"""The final split of linked components into campaigns (Leiden on infrastructure links)."""

from __future__ import annotations

import numpy as np

from distillguard.detect._communities import refine_campaigns
from distillguard.detect._core import Assessment
from distillguard.detect._decision import BLOCK
from distillguard.detect._state import LINK_KINDS

MIN_ACCOUNTS = 5


def _component(links: dict[int, list[tuple[str, int]]]) -> Assessment:
    """One linked component: account -> the (kind, key) it shares with others."""
    keys = sorted({k for ks in links.values() for k in ks})
    sp = np.array([(LINK_KINDS.index(kind), key, acct, keys.index((kind, key)))
                   for acct, ks in links.items() for kind, key in ks], np.int64)
    n = max(links) + 1
    full = np.full(n, 0.9)
    return Assessment(
        features={}, harvest=full, component=np.zeros(n, np.int64), campaign_score=full,
        component_kinds={0: sorted({kind for kind, _ in keys})}, component_size={0: n},
        score=full, action=np.full(n, BLOCK), suspicious_pairs=sp,
    )


def _campaigns(a: Assessment) -> list[list[int]]:
    r = refine_campaigns(a, MIN_ACCOUNTS)
    assert np.array_equal(r.component, refine_campaigns(a, MIN_ACCOUNTS).component)
    assert np.array_equal(r.action, a.action)
    assert sum(r.component_size.values()) == len(a.component)
    return sorted(np.flatnonzero(r.component == c).tolist() for c in r.component_size)


def test_two_operators_touching_through_one_address_are_two_campaigns() -> None:
    # Operator A: accounts 0-9 on four proxy addresses and one card; operator B: 10-16 on
    # three others and another card. Account 9 also used one of B's addresses once; all of
    # them send the same public prompt set (a template key, which never splits).
    links: dict[int, list[tuple[str, int]]] = {}
    for acct in range(10):
        links[acct] = [("ip", 100 + acct % 4), ("ip", 100 + (acct + 1) % 4), ("payment", 1)]
    for acct in range(10, 17):
        links[acct] = [("ip", 200 + acct % 3), ("ip", 200 + (acct + 1) % 3), ("payment", 2)]
    links[9].append(("ip", 200))
    # Two accounts on an address of their own (too few for a campaign), one on the template only.
    links[17] = [("ip", 300)]
    links[18] = [("ip", 300)]
    links[19] = []
    for acct in links:
        links[acct].append(("head0", 7))
    a = _component(links)
    # The small fragment and the template-only account stay with the larger operator.
    assert _campaigns(a) == [[*range(10), 17, 18, 19], list(range(10, 17))]
    r = refine_campaigns(a, MIN_ACCOUNTS)
    assert r.component_kinds[r.component[0]] == ["head0", "ip", "payment"]
    assert r.component_size[r.component[10]] == 7


def test_a_homogeneous_cluster_is_not_split() -> None:
    # 24 accounts, each on 3 of 8 shared addresses in a ring, all on one card: modularity
    # finds arcs, but they share too many addresses to be separate operators.
    links = {acct: [("ip", (acct + d) % 8) for d in range(3)] + [("payment", 1)]
             for acct in range(24)}
    assert _campaigns(_component(links)) == [list(range(24))]


def test_a_component_without_infrastructure_links_is_kept_whole() -> None:
    links = {acct: [("head0", 7), ("tail1", 8)] for acct in range(12)}
    assert _campaigns(_component(links)) == [list(range(12))]
