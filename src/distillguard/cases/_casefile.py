"""Case files: one campaign's evidence for legal and policy teams, as HTML and as PDF.

The HTML file is self-contained (inline CSS and SVG; no scripts, fonts or links to fetch),
so it can be mailed or archived as is. The PDF is drawn with matplotlib's `PdfPages`:
it needs no browser and works offline, and matplotlib is already a dependency
(PSF/BSD-style licence). It carries the same numbers, reasons and plots, in a print layout.
"""

from __future__ import annotations

import io
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distillguard._errors import ConfigError
from distillguard.cases._bundle import campaign_indicators
from distillguard.cases._casedata import KIND_LABELS, CaseStore, fold_attributes
from distillguard.cases._caseplots import (
    ACTION_COLOURS,
    PLOT_LOCK,
    _matplotlib,
    graph_figure,
    graph_svg,
    traffic_figure,
    traffic_svg,
)

_TEMPLATES = Path(__file__).parent / "templates"


def _ts(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _context(store: CaseStore, campaign_id: str) -> dict[str, Any]:
    c = store.campaign(campaign_id)
    if c is None:
        raise ConfigError(
            f"The verdicts have no campaign {campaign_id!r}; see the campaigns table for the ids."
        )
    caps = store.capabilities(campaign_id=campaign_id)
    return {
        "c": c,
        "members": store.members(campaign_id, limit=2000),
        "templates": store.templates(campaign_id),
        "attrs": fold_attributes(store.attributes(campaign_id, limit=2000), per_kind=10)[0],
        "caps": caps,
        "cap_total": sum(n for _, n in caps) or 1,
        "indicators": campaign_indicators(store, campaign_id),
        "traffic": store.traffic(campaign_id=campaign_id),
        "log_dir": str(store.log_dir),
        "verdicts_dir": str(store.verdicts_dir),
        "generated": datetime.now(UTC),
    }


def casefile_html(store: CaseStore, campaign_id: str) -> str:
    """The case file of one campaign as one self-contained HTML page.

    Raises:
        ConfigError: the verdicts have no such campaign.
    """
    import jinja2

    ctx = _context(store, campaign_id)
    accounts, attrs, edges = store.links(campaign_id)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ts"] = _ts
    env.filters["num"] = lambda n: f"{int(n):,}"
    env.filters["pct"] = lambda x: "–" if x is None else f"{float(x):.0%}"
    return env.get_template("casefile.html.j2").render(
        graph=graph_svg(accounts, attrs, edges, title=f"Campaign {campaign_id}"),
        traffic_plot=traffic_svg(
            ctx["traffic"],
            ctx["c"].first_flagged_ts,
            title=f"Campaign {campaign_id}: events over time",
        ),
        KIND_LABELS=KIND_LABELS,
        shown_accounts=len(accounts),
        **ctx,
    )


def _text_pages(plt: Any, lines: list[tuple[str, str]]) -> list[Any]:
    """A4 pages of flowing text; each line is (style, text), style in h1, h2, p, small, mono."""
    sizes = {"h1": 17, "h2": 12, "p": 9.5, "small": 8, "mono": 7.5}
    widths = {"h1": 60, "h2": 80, "p": 100, "small": 115, "mono": 96}
    pages: list[Any] = []
    fig: Any = None
    y = 0.0
    for style, text in lines:
        wrapped = textwrap.wrap(text, widths[style]) or [""]
        if style == "mono":
            wrapped = wrapped[:3]
        if style in ("h1", "h2"):
            y -= 0.014
        for i, part in enumerate(wrapped):
            line_h = sizes[style] / 11.69 / 72 * 1.45
            if fig is None or y - line_h < 0.05 or (style == "h2" and y < 0.15):
                fig = plt.figure(figsize=(8.27, 11.69))
                pages.append(fig)
                y = 0.95
            fig.text(
                0.07 + (0.02 if i and style == "p" else 0) + (0.02 if style == "mono" else 0),
                y,
                part,
                fontsize=sizes[style],
                weight="bold" if style in ("h1", "h2") else "normal",
                family="monospace" if style == "mono" else "sans-serif",
                color="#555" if style in ("small", "mono") else "#111",
                va="top",
            )
            y -= line_h
        y -= 0.008 if style in ("h1", "h2") else 0.003
    return pages


def casefile_pdf(store: CaseStore, campaign_id: str) -> bytes:
    """The case file of one campaign as a PDF (matplotlib, no browser needed).

    Raises:
        ConfigError: the verdicts have no such campaign.
    """
    from matplotlib.backends.backend_pdf import PdfPages

    plt = _matplotlib()
    ctx = _context(store, campaign_id)
    c = ctx["c"]
    lines: list[tuple[str, str]] = [
        ("h1", f"Case file: distillation campaign {campaign_id}"),
        (
            "small",
            f"Generated {_ts(ctx['generated'])} by distillguard from {ctx['log_dir']} "
            f"and {ctx['verdicts_dir']}.",
        ),
        ("h2", "Summary"),
        (
            "p",
            f"Risk score {c.score:.2f}; {c.accounts:,} accounts; {c.events:,} events between "
            f"{_ts(c.first_ts)} and {_ts(c.last_ts)}; first flagged {_ts(c.first_flagged_ts)}; "
            f"{c.harvest_before_flag:.0%} of its events were served before its accounts were "
            f"flagged; {c.blocked:,} accounts blocked.",
        ),
        ("h2", "Why it was flagged"),
        *[("p", f"• {r}") for r in c.reasons],
        ("h2", "Capability focus"),
        *[("p", f"• {name}: {n:,} events ({n / ctx['cap_total']:.0%})") for name, n in ctx["caps"]],
        ("h2", "Prompt templates"),
    ]
    for t in ctx["templates"]:
        fp = f" [{t.fingerprint}]" if t.fingerprint else ""
        lines.append(("p", f"• {t.template_id}{fp}: {t.accounts:,} accounts, {t.events:,} events"))
        lines.append(("mono", " ".join(t.example.split())[:280]))
    lines.append(("h2", "Shared attributes"))
    for a in ctx["attrs"][:25]:
        lines.append(
            (
                "p",
                f"• {KIND_LABELS.get(a.kind, a.kind)} {a.value}: {a.members:,} member "
                f"accounts, {a.accounts - a.members:,} outside",
            )
        )
    lines.append(("h2", "Indicators for sharing (STIX 2.1)"))
    per_kind: dict[str, int] = {}
    for v in ctx["indicators"]:
        per_kind[v.kind] = per_kind.get(v.kind, 0) + 1
        if per_kind[v.kind] <= 6:
            lines.append(("mono", f"{v.kind:<10} {v.value[:64]}  ({v.members} members)"))
    more = {k: n - 6 for k, n in per_kind.items() if n > 6}
    if more:
        lines.append(
            (
                "small",
                "… and "
                + ", ".join(f"{n} more {k}" for k, n in more.items())
                + " (all in the HTML case file and the STIX bundle).",
            )
        )
    buf = io.BytesIO()
    with (
        PLOT_LOCK,
        PdfPages(
            buf,
            metadata={
                "Title": f"Case file {campaign_id}",
                "Creator": "distillguard",
                "CreationDate": None,
            },
        ) as pdf,
    ):
        for fig in _text_pages(plt, lines):
            pdf.savefig(fig)
            plt.close(fig)
        accounts, attrs, edges = store.links(campaign_id)
        fig = graph_figure(accounts, attrs, edges, width=8.27, height=6.2)
        fig.suptitle(
            f"Campaign {campaign_id}: accounts and what links them",
            x=0.07,
            ha="left",
            fontsize=12,
            weight="bold",
        )
        pdf.savefig(fig)
        plt.close(fig)
        fig = traffic_figure(
            ctx["traffic"],
            c.first_flagged_ts,
            title=f"Campaign {campaign_id}: events over time",
            width=8.27,
            height=3.0,
        )
        pdf.savefig(fig, bbox_inches="tight")
        plt.close(fig)
        members = ctx["members"]
        for start in range(0, min(len(members), 200), 50):
            chunk = members[start : start + 50]
            fig = plt.figure(figsize=(8.27, 11.69))
            ax = fig.add_axes((0.05, 0.04, 0.9, 0.9))
            ax.set_axis_off()
            ax.set_title(
                f"Member accounts {start + 1}–{start + len(chunk)} of {len(members):,}",
                loc="left",
                fontsize=11,
                weight="bold",
            )
            rows = [
                [
                    m.account_id,
                    f"{m.score or 0:.2f}",
                    m.action or "",
                    f"{m.events:,}",
                    _ts(m.first_flagged_ts),
                    (m.reasons[0] if m.reasons else "")[:70],
                ]
                for m in chunk
            ]
            table = ax.table(
                cellText=rows,
                colLabels=["account", "score", "verdict", "events", "flagged", "main reason"],
                loc="upper left",
                colWidths=[0.16, 0.06, 0.08, 0.07, 0.15, 0.48],
            )
            table.auto_set_font_size(False)
            table.set_fontsize(6.5)
            for (r, col), cell in table.get_celld().items():
                cell.set_linewidth(0.2)
                if r and col == 2:
                    cell.get_text().set_color(
                        ACTION_COLOURS.get(cell.get_text().get_text(), "#111")
                    )
            pdf.savefig(fig)
            plt.close(fig)
    return buf.getvalue()


def write_casefile(
    log_dir: str | Path,
    verdicts_dir: str | Path,
    campaign_id: str,
    out_dir: str | Path,
    *,
    pdf: bool = True,
    store: CaseStore | None = None,
) -> list[Path]:
    """Write `case-<ID>.html` (and `case-<ID>.pdf`) for one campaign into `out_dir`.

    Returns:
        The paths written.

    Raises:
        ConfigError: the verdicts have no such campaign.
    """
    cases = store if store is not None else CaseStore(log_dir, verdicts_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in campaign_id)
    html_path = out / f"case-{safe}.html"
    html_path.write_text(casefile_html(cases, campaign_id), encoding="utf-8")
    written = [html_path]
    if pdf:
        pdf_path = out / f"case-{safe}.pdf"
        pdf_path.write_bytes(casefile_pdf(cases, campaign_id))
        written.append(pdf_path)
    return written
