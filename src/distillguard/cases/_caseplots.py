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
from datetime import datetime, timedelta
from html import escape
from typing import Any

from distillguard.cases._casedata import KIND_LABELS, Account, Attribute, Link

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


_TRAFFIC_CSS = (
    "svg.traffic .grid{stroke:#e5e7eb}svg.traffic .axis{stroke:#9ca3af}"
    "svg.traffic .tick{font:10px sans-serif;fill:#5f6b76}"
    "svg.traffic .t-title{font:600 11px sans-serif;fill:#1f2933}"
    "svg.traffic .area{fill:#90a4ae;fill-opacity:.55;stroke:#37474f;stroke-width:.9}"
    "svg.traffic .before{fill:#ffcdd2;fill-opacity:.5}"
    "svg.traffic .overlay{fill:#c62828;fill-opacity:.55;stroke:#b71c1c;stroke-width:.6}"
    "svg.traffic .flag{stroke:#c62828;stroke-width:1.6}"
    "svg.traffic .flag-label{font:10px sans-serif;fill:#b71c1c}"
)


def _nice_ceiling(x: float) -> float:
    if x <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(x))
    return float(next(m * exp for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * exp >= x))


def _time_ticks(t0: datetime, t1: datetime) -> list[tuple[datetime, str]]:
    """Round tick times between t0 and t1: days (or weeks) for long spans, hours for short."""
    span = (t1 - t0).total_seconds()
    hours = span / 3600
    step = next(
        (h for h in (1, 2, 3, 6, 12, 24, 48, 168) if hours / h <= 9), max(1, int(hours / 8))
    )
    start = t0.replace(minute=0, second=0, microsecond=0)
    start = start.replace(hour=(start.hour // step) * step if step < 24 else 0)
    ticks: list[tuple[datetime, str]] = []
    t = start
    while t <= t1:
        if t >= t0:
            label = f"{t:%b %d}" if step >= 24 or t.hour == 0 else f"{t:%H:%M}"
            ticks.append((t, label))
        t += timedelta(hours=step)
    return ticks


def traffic_svg(
    series: Sequence[tuple[datetime, int]],
    flagged: datetime | None,
    *,
    title: str = "",
    width: int = 760,
    height: float = 2.4,
    overlay: Sequence[tuple[datetime, int]] | None = None,
    labels: tuple[str, str] = ("all events", "campaigns"),
) -> str:
    """Events per time bucket as inline SVG, with the flag moment and the harvest before it.

    `overlay`, a second series drawn on top in red (e.g. the campaigns' share of all traffic),
    is labelled with `labels`.

    Hand-written (no matplotlib) so that a page renders it in a millisecond; `height` is in
    inches like `traffic_figure`'s (x 90 px).
    """
    h = int(height * 90)
    left, right, top, bottom = 52, 26, 24, 26
    pw, ph = width - left - right, h - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" class="traffic" '
        f'role="img" aria-label="{escape(title or "events over time")}">',
        f"<title>{escape(title or 'events over time')}</title>",
        f"<style>{_TRAFFIC_CSS}</style>",
        f'<text x="{left}" y="14" class="t-title">{escape(title)}</text>',
    ]
    if not series:
        out.append(f'<text x="{width / 2}" y="{h / 2}" text-anchor="middle">no events</text></svg>')
        return "".join(out)
    xs = [t for t, _ in series]
    ys = [n for _, n in series]
    step = (xs[1] - xs[0]) if len(xs) > 1 else timedelta(hours=1)
    t0, t1 = xs[0], xs[-1] + step
    if flagged is not None and flagged > t1:
        t1 = flagged
    total_s = (t1 - t0).total_seconds() or 1.0
    ymax = _nice_ceiling(max(ys))

    def px(t: datetime) -> float:
        return left + pw * (t - t0).total_seconds() / total_s

    def py(n: float) -> float:
        return top + ph * (1 - n / ymax)

    for i in range(5):
        v = ymax * i / 4
        y = py(v)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 3.5:.1f}" text-anchor="end" class="tick">'
            f"{v:,.0f}</text>"
        )
    for t, label in _time_ticks(t0, t1):
        x = px(t)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
            f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">'
            f"{label}</text>"
        )
    if flagged is not None and flagged > t0:
        out.append(
            f'<rect x="{left}" y="{top}" width="{px(flagged) - left:.1f}" height="{ph}" '
            f'class="before"/>'
        )

    def area(values: Sequence[tuple[datetime, int]], cls: str) -> str:
        points = [f"M{left:.1f},{py(0):.1f}"]
        by_time = dict(values)
        t = t0
        prev = 0
        # Walk every bucket so that gaps drop to zero instead of being bridged.
        while t < t1 and len(points) < 20_000:
            n = by_time.get(t, 0)
            if n != prev or t == t0:
                points.append(f"L{px(t):.1f},{py(prev):.1f}L{px(t):.1f},{py(n):.1f}")
                prev = n
            t += step
        points.append(f"L{px(t1):.1f},{py(prev):.1f}L{px(t1):.1f},{py(0):.1f}Z")
        return f'<path d="{"".join(points)}" class="{cls}"/>'

    out.append(area(series, "area"))
    if overlay:
        out.append(area(overlay, "overlay"))
        lx = left + pw - 190
        out.append(
            f'<rect x="{lx}" y="4" width="10" height="10" class="area"/>'
            f'<text x="{lx + 14}" y="13" class="tick">{escape(labels[0])}</text>'
            f'<rect x="{lx + 95}" y="4" width="10" height="10" class="overlay"/>'
            f'<text x="{lx + 109}" y="13" class="tick">{escape(labels[1])}</text>'
        )
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    if flagged is not None:
        before = sum(n for tt, n in series if tt < flagged)
        x = px(flagged)
        share = before / (sum(ys) or 1)
        anchor, dx = ("end", -6) if x > left + pw * 0.7 else ("start", 6)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="flag"/>'
            f'<text x="{x + dx:.1f}" y="{top + 12}" text-anchor="{anchor}" class="flag-label">'
            f"flagged {flagged:%Y-%m-%d %H:%M} UTC</text>"
            f'<text x="{x + dx:.1f}" y="{top + 25}" text-anchor="{anchor}" class="flag-label">'
            f"{share:.0%} of events before</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _attr_node(a: Attribute) -> str:
    return f"{a.kind}:{a.value}"


def layout(
    accounts: Sequence[Account], attrs: Sequence[Attribute], edges: Sequence[Link], seed: int = 1
) -> dict[str, tuple[float, float]]:
    """Anchored layout of the bipartite graph, in [0, 1]².

    Shared attributes sit evenly on a ring, grouped by kind; accounts are placed by a spring
    layout with the ring fixed, so an account lands between the things it shares (in the
    middle when it shares all of them) and labels never pile up in the centre.
    """
    import networkx as nx

    g = nx.Graph()
    for a in accounts:
        g.add_node(a.account_id)
    ring = [_attr_node(at) for at in sorted(attrs, key=lambda a: (a.kind, -a.members))]
    init: dict[str, tuple[float, float]] = {}
    for i, node in enumerate(ring):
        angle = 2 * math.pi * i / max(len(ring), 1) - math.pi / 2
        init[node] = (math.cos(angle), math.sin(angle))
        g.add_node(node)
    for e in edges:
        if e.src in g and e.dst in g:
            g.add_edge(e.src, e.dst, weight=1.0 if ":" in e.dst else 0.3)
    if g.number_of_nodes() == 0:
        return {}
    if ring:
        pos = nx.spring_layout(g, pos=init, fixed=ring, k=0.2, seed=seed, iterations=60)
        # Keep each account's direction but spread the radii evenly over the disk (by rank),
        # so that accounts sharing everything do not pile up on one another in the centre.
        free = sorted(
            (a.account_id for a in accounts if a.account_id in pos),
            key=lambda n: (math.hypot(*pos[n]), n),
        )
        for rank, node in enumerate(free):
            angle = math.atan2(pos[node][1], pos[node][0])
            radius = 0.82 * math.sqrt((rank + 0.5) / len(free))
            pos[node] = (radius * math.cos(angle), radius * math.sin(angle))
        return {n: (float((p[0] + 1) / 2), float((p[1] + 1) / 2)) for n, p in pos.items()}
    pos = nx.spring_layout(g, k=1.2 / math.sqrt(g.number_of_nodes()), seed=seed, iterations=60)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    return {n: (float((p[0] - x0) / sx), float((p[1] - y0) / sy)) for n, p in pos.items()}


def _label(text: str, at: tuple[float, float], cx: float, cy: float, r: float) -> str:
    """An attribute's label, set outward from the centre of the ring."""
    x, y = at
    if x > 0.6:
        tx, ty, anchor = cx + r + 4, cy + 3.5, "start"
    elif x < 0.4:
        tx, ty, anchor = cx - r - 4, cy + 3.5, "end"
    else:
        tx, ty, anchor = cx, (cy - r - 5 if y < 0.5 else cy + r + 12), "middle"
    return (
        f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" class="attr-label">'
        f"{escape(_short(text, 24))}</text>"
    )


def _short(text: str, n: int = 26) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def graph_svg(
    accounts: Sequence[Account],
    attrs: Sequence[Attribute],
    edges: Sequence[Link],
    *,
    href: Callable[[str], str] | None = None,
    width: int = 860,
    height: int = 560,
    title: str = "Accounts and what links them",
) -> str:
    """The campaign graph as accessible inline SVG: accounts are links, attributes labelled."""
    pos = layout(accounts, attrs, edges)
    pad_x, pad_y = 170, 34
    legend_h = 26

    def xy(node: str) -> tuple[float, float]:
        x, y = pos[node]
        return pad_x + x * (width - 2 * pad_x), legend_h + pad_y + y * (
            height - legend_h - 2 * pad_y
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
            f'stroke="{colour}" stroke-opacity="0.2" stroke-width="1"{dash}/>'
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
            f"{_label(a.value, pos[node], cx, cy, r)}</g>"
        )
    out.append("</g>")
    out.append('<g class="accounts">')
    for acc in accounts:
        if acc.account_id not in pos:
            continue
        cx, cy = xy(acc.account_id)
        r = 3.0 + 1.0 * math.log1p(acc.events)
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
    ax.set_xlim(-0.32, 1.32)  # room for the labels set outward from the ring
    ax.set_ylim(-0.06, 1.06)
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
            side = "left" if x > 0.6 else "right" if x < 0.4 else "center"
            ax.annotate(
                _short(a.value, 22),
                (x, 1 - y),
                xytext={"left": (7, -2), "right": (-7, -2), "center": (0, 9 if y < 0.5 else -12)}[
                    side
                ],
                textcoords="offset points",
                ha=side,
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
