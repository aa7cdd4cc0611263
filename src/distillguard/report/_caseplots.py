"""Plots of a campaign: its traffic against the moment it was flagged, and its link graph.

Traffic plots are matplotlib figures (inline SVG in pages, vector pages in the PDF). The
graph is laid out with networkx and drawn as hand-written SVG, so that each account node is
a keyboard-reachable link with a text label; `graph_figure` draws the same layout with
matplotlib for the PDF.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from typing import Any

from distillguard.report._casedata import KIND_LABELS, Account, Attribute, Link

ACTION_COLOURS: dict[str, str] = {
    "block": "#c62828",
    "throttle": "#ef6c00",
    "monitor": "#f9a825",
    "allow": "#78909c",
}
#: pyplot keeps global state: every figure of this package is made and saved under this lock.
PLOT_LOCK = threading.RLock()

KIND_COLOURS: dict[str, str] = {
    "template": "#6a1b9a",
    "ip": "#1565c0",
    "net24": "#0277bd",
    "payment": "#2e7d32",
    "email": "#00838f",
    "user_agent": "#5d4037",
}


def _matplotlib() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "distillguard",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def figure_svg(fig: Any) -> str:
    """Serialise a matplotlib figure as an inline `<svg>` element (no XML prolog)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _matplotlib().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def traffic_figure(
    series: Sequence[tuple[datetime, int]],
    flagged: datetime | None,
    *,
    title: str = "",
    width: float = 8.0,
    height: float = 2.4,
) -> Any:
    """Events per time bucket, with the moment of flagging and the harvest before it shaded."""
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(width, height))
    if series:
        xs = [t for t, _ in series]
        ys = [n for _, n in series]
        ax.fill_between(xs, ys, step="post", color="#90a4ae", alpha=0.55, linewidth=0)
        ax.step(xs, ys, where="post", color="#37474f", linewidth=0.9, label="events")
        if flagged is not None:
            before = sum(n for t, n in series if t < flagged)
            total = sum(ys) or 1
            ax.axvspan(xs[0], flagged, color="#ffcdd2", alpha=0.45, linewidth=0)
            ax.axvline(flagged, color="#c62828", linewidth=1.6)
            ax.annotate(
                f"flagged {flagged:%Y-%m-%d %H:%M} UTC\n{before / total:.0%} of events before",
                xy=(flagged, max(ys)),
                xytext=(6, -4),
                textcoords="offset points",
                va="top",
                color="#b71c1c",
                fontsize=8.5,
            )
    else:
        ax.text(0.5, 0.5, "no events", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("events per bucket")
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    fig.autofmt_xdate(rotation=0, ha="center")
    import matplotlib.dates as mdates

    ax.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(ax.xaxis.get_major_locator())  # type: ignore[no-untyped-call]
    )
    return fig


def traffic_svg(series: Sequence[tuple[datetime, int]], flagged: datetime | None, **kw: Any) -> str:
    """`traffic_figure` as inline SVG."""
    with PLOT_LOCK:
        return figure_svg(traffic_figure(series, flagged, **kw))


def _attr_node(a: Attribute) -> str:
    return f"{a.kind}:{a.value}"


def layout(
    accounts: Sequence[Account], attrs: Sequence[Attribute], edges: Sequence[Link], seed: int = 1
) -> dict[str, tuple[float, float]]:
    """Spring layout of the bipartite graph (accounts and the attributes they share) in [0, 1]²."""
    import networkx as nx

    g = nx.Graph()
    for a in accounts:
        g.add_node(a.account_id)
    for at in attrs:
        g.add_node(_attr_node(at))
    for e in edges:
        if e.src in g and e.dst in g:
            g.add_edge(e.src, e.dst, weight=1.0 if ":" in e.dst else 0.3)
    if g.number_of_nodes() == 0:
        return {}
    k = 1.6 / math.sqrt(g.number_of_nodes())
    pos = nx.spring_layout(g, k=k, seed=seed, iterations=80)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    return {n: (float((p[0] - x0) / sx), float((p[1] - y0) / sy)) for n, p in pos.items()}


def _short(text: str, n: int = 26) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def graph_svg(
    accounts: Sequence[Account],
    attrs: Sequence[Attribute],
    edges: Sequence[Link],
    *,
    href: Callable[[str], str] | None = None,
    width: int = 760,
    height: int = 520,
    title: str = "Accounts and what links them",
) -> str:
    """The campaign graph as accessible inline SVG: accounts are links, attributes labelled."""
    pos = layout(accounts, attrs, edges)
    pad = 46
    legend_h = 26

    def xy(node: str) -> tuple[float, float]:
        x, y = pos[node]
        return pad + x * (width - 2 * pad), legend_h + pad * 0.6 + y * (
            height - legend_h - 1.6 * pad
        )

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="graph" role="group" aria-labelledby="graph-title">',
        f'<title id="graph-title">{escape(title)}: {len(accounts)} accounts, '
        f"{len(attrs)} shared attributes</title>",
    ]
    # Legend.
    x = 8.0
    for kind in ("template", "net24", "ip", "payment", "email", "user_agent"):
        if not any(a.kind == kind for a in attrs):
            continue
        out.append(
            f'<rect x="{x}" y="8" width="11" height="11" fill="{KIND_COLOURS[kind]}" '
            f'transform="rotate(45 {x + 5.5} 13.5)"/>'
            f'<text x="{x + 16}" y="18" class="legend">{escape(KIND_LABELS[kind])}</text>'
        )
        x += 24 + 6.3 * len(KIND_LABELS[kind])
    for action in ("block", "throttle", "monitor", "allow"):
        out.append(
            f'<circle cx="{x + 5}" cy="13.5" r="5.5" fill="{ACTION_COLOURS[action]}"/>'
            f'<text x="{x + 14}" y="18" class="legend">{action}</text>'
        )
        x += 22 + 6.3 * len(action)
    out.append('<g class="edges">')
    for e in edges:
        if e.src not in pos or e.dst not in pos:
            continue
        (x1, y1), (x2, y2) = xy(e.src), xy(e.dst)
        colour = KIND_COLOURS.get(e.kind, "#9e9e9e")
        dash = "" if ":" in e.dst else ' stroke-dasharray="3 3"'
        out.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{colour}" stroke-opacity="0.28" stroke-width="1"{dash}/>'
        )
    out.append("</g>")
    out.append('<g class="attributes">')
    for a in attrs:
        node = _attr_node(a)
        if node not in pos:
            continue
        cx, cy = xy(node)
        r = 5 + 2.2 * math.log1p(a.members)
        label = f"{KIND_LABELS.get(a.kind, a.kind)} {a.value}: {a.members} member accounts"
        if a.accounts > a.members:
            label += f", {a.accounts - a.members} accounts outside the campaign"
        out.append(
            f'<g class="attr"><title>{escape(label)}</title>'
            f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" '
            f'fill="{KIND_COLOURS.get(a.kind, "#616161")}" '
            f'transform="rotate(45 {cx:.1f} {cy:.1f})"/>'
            f'<text x="{cx:.1f}" y="{cy + r + 11:.1f}" text-anchor="middle" class="attr-label">'
            f"{escape(_short(a.value))}</text></g>"
        )
    out.append("</g>")
    out.append('<g class="accounts">')
    for acc in accounts:
        if acc.account_id not in pos:
            continue
        cx, cy = xy(acc.account_id)
        r = 3.5 + 1.6 * math.log1p(acc.events)
        colour = ACTION_COLOURS.get(acc.action or "allow", "#78909c")
        label = (
            f"account {acc.account_id}: {acc.action or 'no verdict'}, score "
            f"{(acc.score or 0.0):.2f}, {acc.events} events"
        )
        circle = (
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{colour}" '
            f'stroke="#fff" stroke-width="1.2"/>'
        )
        if href is not None:
            out.append(
                f'<a href="{escape(href(acc.account_id))}" class="node" '
                f'aria-label="{escape(label)}"><title>{escape(label)}</title>{circle}</a>'
            )
        else:
            out.append(f"<g><title>{escape(label)}</title>{circle}</g>")
    out.append("</g></svg>")
    return "".join(out)


def graph_figure(
    accounts: Sequence[Account],
    attrs: Sequence[Attribute],
    edges: Sequence[Link],
    *,
    width: float = 8.0,
    height: float = 5.5,
) -> Any:
    """The same graph drawn with matplotlib (for the PDF case file)."""
    plt = _matplotlib()
    pos = layout(accounts, attrs, edges)
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_axis_off()
    for e in edges:
        if e.src in pos and e.dst in pos:
            (x1, y1), (x2, y2) = pos[e.src], pos[e.dst]
            ax.plot(
                [x1, x2],
                [1 - y1, 1 - y2],
                color=KIND_COLOURS.get(e.kind, "#9e9e9e"),
                alpha=0.25,
                linewidth=0.7,
                zorder=1,
            )
    for a in attrs:
        node = _attr_node(a)
        if node in pos:
            x, y = pos[node]
            ax.scatter(
                [x],
                [1 - y],
                marker="D",
                s=30 + 20 * math.log1p(a.members),
                color=KIND_COLOURS.get(a.kind, "#616161"),
                zorder=2,
            )
            ax.annotate(
                _short(a.value, 22),
                (x, 1 - y),
                xytext=(0, -10),
                textcoords="offset points",
                ha="center",
                fontsize=6.5,
            )
    for acc in accounts:
        if acc.account_id in pos:
            x, y = pos[acc.account_id]
            ax.scatter(
                [x],
                [1 - y],
                s=12 + 8 * math.log1p(acc.events),
                color=ACTION_COLOURS.get(acc.action or "allow", "#78909c"),
                edgecolors="white",
                linewidths=0.6,
                zorder=3,
            )
    handles = [
        plt.Line2D([], [], marker="D", linestyle="", color=KIND_COLOURS[k], label=KIND_LABELS[k])
        for k in KIND_COLOURS
        if any(a.kind == k for a in attrs)
    ] + [
        plt.Line2D([], [], marker="o", linestyle="", color=c, label=f"account: {a}")
        for a, c in ACTION_COLOURS.items()
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1.08),
        ncol=5,
        fontsize=7,
        frameon=False,
    )
    return fig
