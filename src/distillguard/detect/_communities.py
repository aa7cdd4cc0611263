"""Split linked components into campaigns with Louvain (networkx; BSD-licensed).

Connected components are cheap and causal, so the replay decides actions on them. Two
operators can still touch through one shared public prompt set; Louvain on the account-key
graph, weighted by how telling each kind of link is, separates them for the report.
"""

from __future__ import annotations

from dataclasses import replace

import networkx as nx
import numpy as np

from distillguard.detect._scoring import Assessment
from distillguard.detect._state import LINK_KINDS, TEMPLATE_KINDS

# How strongly one shared key of a kind ties two accounts together.
LINK_WEIGHT = {kind: (0.5 if kind in TEMPLATE_KINDS else 1.0) for kind in LINK_KINDS}
LINK_WEIGHT.update({"payment": 2.0, "email": 0.5})
_WEIGHTS = [LINK_WEIGHT[k] for k in LINK_KINDS]
_IS_TEMPLATE = np.array([k in TEMPLATE_KINDS for k in LINK_KINDS])


# Louvain splits even a homogeneous cluster; keep a split only where the parts barely touch.
MAX_CUT_SHARE = 0.2


def _cut_share(graph: nx.Graph, parts: list[set[object]]) -> float:
    where = {node: i for i, part in enumerate(parts) for node in part}
    total = cut = 0.0
    for u, v, w in graph.edges(data="weight"):
        total += w
        if where[u] != where[v]:
            cut += w
    return cut / total if total else 0.0


def refine_campaigns(a: Assessment, min_accounts: int, seed: int = 0) -> Assessment:
    """Relabel `a.component` by Louvain community within each component (actions unchanged)."""
    if not a.component_size:
        return a
    sp = a.suspicious_pairs
    component = np.full_like(a.component, -1)
    comp_kinds: dict[int, list[str]] = {}
    comp_size: dict[int, int] = {}
    campaign_score = a.campaign_score.copy()
    next_id = 0
    renamed: dict[int, int] = {}  # old id -> the new id of its (first) community
    comp_of = a.component[sp[:, 2]]
    for cid in sorted(a.component_size):
        renamed[cid] = next_id
        idx = np.flatnonzero(a.component == cid)
        rows = sp[comp_of == cid]
        # Split on infrastructure; shared public prompt sets are what may join two operators.
        infra = rows[~_IS_TEMPLATE[rows[:, 0]]].tolist()
        graph = nx.Graph()
        graph.add_weighted_edges_from(
            (("a", acct), ("k", kind, key), _WEIGHTS[kind]) for kind, key, acct, _sid in infra
        )
        parts = (
            nx.community.louvain_communities(graph, weight="weight", seed=seed)
            if graph.number_of_nodes()
            else []
        )
        if _cut_share(graph, parts) > MAX_CUT_SHARE:
            parts = [set(graph.nodes)]
        groups = [sorted(n[1] for n in part if n[0] == "a") for part in parts]
        groups = [g for g in groups if g]
        big = [g for g in groups if len(g) >= min_accounts]
        if len(big) <= 1:
            big = [sorted(int(i) for i in idx)]
        else:
            # Accounts in fragments too small to stand alone stay with the largest community.
            placed = {i for g in big for i in g}
            leftovers = [int(i) for i in idx if int(i) not in placed]
            big.sort(key=len, reverse=True)
            big[0] = sorted(big[0] + leftovers)
        for members in big:
            m_idx = np.asarray(members, np.int64)
            component[m_idx] = next_id
            kinds = rows[np.isin(rows[:, 2], m_idx), 0]
            # (A small campaign of `_cells` has no suspicious pairs: its kinds stay as given.)
            comp_kinds[next_id] = (sorted({LINK_KINDS[int(k)] for k in np.unique(kinds)})
                                   or a.component_kinds[cid])
            comp_size[next_id] = len(members)
            score = float(a.harvest[m_idx].mean()) * (1.0 - np.exp(-len(members) / 4.0))
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
