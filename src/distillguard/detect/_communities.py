"""Split linked components into campaigns with Leiden (graspologic-native; MIT-licensed).

Connected components are cheap and causal, so the replay decides actions on them. Two
operators can still touch through one shared public prompt set; Leiden on the account-key
graph, weighted by how telling each kind of link is, separates them for the report.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp_sparse
from graspologic_native import leiden_csr

from distillguard.detect._core import Assessment
from distillguard.detect._profile import CAMPAIGN_SIZE_SCALE
from distillguard.detect._state import (
    IS_TEMPLATE_LINK,
    LINK_KINDS,
    PAIR_ACCOUNT,
    PAIR_CODE,
    PAIR_KIND,
    TEMPLATE_KINDS,
)

# How strongly one shared key of a kind ties two accounts together.
LINK_WEIGHT = {kind: (0.5 if kind in TEMPLATE_KINDS else 1.0) for kind in LINK_KINDS}
LINK_WEIGHT.update({"payment": 2.0, "email": 0.5})
_WEIGHTS = np.array([LINK_WEIGHT[k] for k in LINK_KINDS])


# Modularity splits even a homogeneous cluster; keep a split only where the parts barely touch.
MAX_CUT_SHARE = 0.2


def _cut_share(weight: np.ndarray, u_part: np.ndarray, v_part: np.ndarray) -> float:
    """The share of the edges' weight between different parts (edge i joins parts u_part[i]
    and v_part[i])."""
    total = float(weight.sum())
    return float(weight[u_part != v_part].sum()) / total if total else 0.0


def _communities(rows: np.ndarray, seed: int) -> list[np.ndarray]:
    """The accounts of each community of one component's infrastructure graph (accounts and
    the keys they share, one node each), sorted; [] when the parts would touch too much."""
    # Split on infrastructure; shared public prompt sets are what may join two operators.
    infra = rows[~IS_TEMPLATE_LINK[rows[:, PAIR_KIND]]]
    if not len(infra):
        return []
    accts, a_node = np.unique(infra[:, PAIR_ACCOUNT], return_inverse=True)
    keys, k_node = np.unique(infra[:, PAIR_CODE] * len(LINK_KINDS) + infra[:, PAIR_KIND], return_inverse=True)
    n_accts = len(accts)
    # One edge per (account, key), as a graph keeps it however often the pair was listed.
    edge, first = np.unique(a_node * len(keys) + k_node, return_index=True)
    u = edge // len(keys)
    v = edge % len(keys) + n_accts
    w = _WEIGHTS[infra[first, PAIR_KIND]]
    n = n_accts + len(keys)
    adj = sp_sparse.coo_matrix(
        (np.concatenate([w, w]), (np.concatenate([u, v]), np.concatenate([v, u]))), shape=(n, n)
    ).tocsr()
    _, labels = leiden_csr(
        adj.indptr.astype(np.int64), adj.indices.astype(np.int32), adj.data.astype(np.float64),
        n, seed=seed,
    )
    part = np.fromiter((labels[i] for i in range(n)), np.int64, count=n)
    if _cut_share(w, part[u], part[v]) > MAX_CUT_SHARE:
        return []
    acct_part = part[:n_accts]
    order = np.argsort(acct_part, kind="stable")
    cuts = np.flatnonzero(np.diff(acct_part[order])) + 1
    return [accts[g] for g in np.split(order, cuts)]


def refine_campaigns(a: Assessment, min_accounts: int, seed: int = 0) -> Assessment:
    """Relabel `a.component` by Leiden community within each component (actions unchanged)."""
    if not a.component_size:
        return a
    sp = a.suspicious_pairs
    component = np.full_like(a.component, -1)
    comp_kinds: dict[int, list[str]] = {}
    comp_size: dict[int, int] = {}
    campaign_score = a.campaign_score.copy()
    next_id = 0
    renamed: dict[int, int] = {}  # old id -> the new id of its (first) community
    # Accounts and pairs grouped by component once, instead of one pass over all per component.
    cids = np.array(sorted(a.component_size), np.int64)
    acct_order = np.argsort(a.component, kind="stable")
    acct_lo, acct_hi = (np.searchsorted(a.component[acct_order], cids, side=s)
                        for s in ("left", "right"))
    comp_of = a.component[sp[:, PAIR_ACCOUNT]]
    pair_order = np.argsort(comp_of, kind="stable")
    pair_lo, pair_hi = (np.searchsorted(comp_of[pair_order], cids, side=s)
                        for s in ("left", "right"))
    for j, cid in enumerate(cids.tolist()):
        renamed[cid] = next_id
        idx = acct_order[acct_lo[j]:acct_hi[j]]  # ascending
        rows = sp[pair_order[pair_lo[j]:pair_hi[j]]]
        # Two communities of min_accounts each need that many accounts in the component.
        parts = _communities(rows, seed) if len(idx) >= 2 * max(min_accounts, 1) else []
        big = [g for g in parts if len(g) >= min_accounts]
        if len(big) <= 1:
            big = [idx]
        else:
            # Accounts in fragments too small to stand alone stay with the largest community.
            big.sort(key=lambda g: (-len(g), int(g[0])))
            big[0] = np.union1d(big[0], np.setdiff1d(idx, np.concatenate(big)))
        for g, m_idx in enumerate(big):
            component[m_idx] = next_id + g
        # (campaign, kind) of the component's pairs: the kinds of link behind each campaign.
        pair_kinds = np.unique(component[rows[:, PAIR_ACCOUNT]] * len(LINK_KINDS) + rows[:, PAIR_KIND])
        for m_idx in big:
            kinds = pair_kinds[pair_kinds // len(LINK_KINDS) == next_id] % len(LINK_KINDS)
            # (A small campaign of `_cells` has no suspicious pairs: its kinds stay as given.)
            comp_kinds[next_id] = (sorted(LINK_KINDS[int(k)] for k in kinds)
                                   or a.component_kinds[cid])
            comp_size[next_id] = len(m_idx)
            score = float(a.harvest[m_idx].mean()) * (1.0 - np.exp(-len(m_idx) / CAMPAIGN_SIZE_SCALE))
            campaign_score[m_idx] = np.maximum(score, a.campaign_score[m_idx])
            next_id += 1
    return replace(
        a,
        component=component,
        campaign_score=a.campaign_score if next_id == 0 else campaign_score,
        component_kinds=comp_kinds,
        component_size=comp_size,
        cell_campaign=np.array([renamed[int(c)] for c in a.cell_campaign], np.int64),
    )
