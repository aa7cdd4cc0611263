"""The analyst console: a FastAPI app of server-rendered pages over a `CaseStore`.

Everything a page shows comes from tables pre-aggregated on startup, and the plots of each
campaign and account are rendered once and kept, so pages stay fast on large logs.
Actions (block, unblock, mark benign) are plain HTML forms that post back and redirect;
they are written to `overrides.jsonl` and handed to the optional `on_action` hook.

(No `from __future__ import annotations` here: FastAPI resolves the route handlers'
annotations, and `Request` is imported inside `create_app`.)
"""

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from distillguard.cases import KIND_LABELS, KIND_PLURALS, CaseStore, fold_attributes
from distillguard.ui._overrides import CONSOLE_ACTIONS, ActionHook, OverrideLog

_PLOT_CACHE_MAX = 256
_GRAPH_ACCOUNTS = 120


def _env() -> Any:
    import jinja2
    import markupsafe

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("distillguard.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ts"] = _fmt_ts
    env.filters["num"] = lambda n: f"{int(n):,}" if n is not None else "–"
    env.filters["pct"] = lambda x: "–" if x is None else f"{float(x):.0%}"
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["evidence"] = lambda v: markupsafe.Markup(_evidence_html(v))
    env.globals["KIND_LABELS"] = KIND_LABELS
    env.globals["KIND_PLURALS"] = KIND_PLURALS
    return env


def _evidence_html(value: Any, depth: int = 0) -> str:
    """Structured evidence as nested HTML: objects as lists of facts, lists of objects as
    tables, numbers rounded (every string escaped)."""
    from html import escape

    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, dict) and depth < 3:
        items = "".join(
            f"<dt>{escape(str(k).replace('_', ' '))}</dt><dd>{_evidence_html(v, depth + 1)}</dd>"
            for k, v in value.items()
        )
        return f'<dl class="facts">{items}</dl>'
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and depth < 3:
        keys = list(dict.fromkeys(k for v in value for k in v))
        head = "".join(f'<th scope="col">{escape(str(k))}</th>' for k in keys)
        rows = "".join(
            "<tr>" + "".join(f"<td>{_evidence_html(v.get(k, ''), 3)}</td>" for k in keys) + "</tr>"
            for v in value[:50]
        )
        return (
            f'<table class="evidence"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        )
    if isinstance(value, list):
        return ", ".join(_evidence_html(v, 3) for v in value[:50])
    return escape(str(value))


def _fmt_ts(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def create_app(
    log_dir: str | Path,
    verdicts_dir: str | Path,
    *,
    on_action: ActionHook | None = None,
    store: CaseStore | None = None,
    warm_campaigns: int = 10,
    warm_now: bool = False,
    indicators: str | Path | Sequence[str | Path] | None = None,
    csrf: str = "",
) -> Any:
    """Build the console for one traffic log and one scan.

    Args:
        log_dir: the traffic log.
        verdicts_dir: the scan output; actions go to `overrides.jsonl` in it.
        on_action: called with the overrides of each action after they are recorded (the
            gateway passes a function that applies them through its admin API).
        store: an already built `CaseStore` (built from the two directories when None).
        warm_campaigns: render the plots of this many top campaigns in the background on
            startup, so that their first visit is fast too.
        warm_now: render those plots before returning instead (a caller that builds the
            app off the request path and swaps it in when ready, like the gateway).
        indicators: partners' STIX bundles or indicator stores (see
            `distillguard.share.load_indicators`); accounts of the log that match are listed
            on the front page and their pages.
        csrf: the value the action forms carry (`ConsoleGuard.csrf`; the guard checks it).

    Returns:
        A FastAPI app; mount it under a prefix (e.g. `/console`) or serve it alone.

    Examples:
        >>> app = create_app("log", "verdicts")  # doctest: +SKIP
        >>> uvicorn.run(app, port=8050)  # doctest: +SKIP
    """
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, RedirectResponse, Response
    from starlette.concurrency import run_in_threadpool

    from distillguard.cases import (
        casefile_html,
        casefile_pdf,
        export_bundle,
        graph_svg,
        traffic_svg,
    )

    cases = store if store is not None else CaseStore(log_dir, verdicts_dir)
    matches: dict[str, list[tuple[str, str, int]]] = {}
    if indicators is not None:
        from distillguard.share import load_indicators

        table = load_indicators(indicators).match_accounts(log_dir)
        for acct, kind, value, n in zip(
            table.column("account_id").to_pylist(),
            table.column("kind").to_pylist(),
            table.column("value").to_pylist(),
            table.column("events").to_pylist(),
            strict=True,
        ):
            matches.setdefault(str(acct), []).append((str(kind), str(value), int(n)))
    # The front page's table, built once: most matched kinds first.
    match_rows: list[tuple[str, str, Any]] = []
    for acct, hits in sorted(matches.items(), key=lambda kv: (-len({h[0] for h in kv[1]}), kv[0]))[
        :200
    ]:
        kinds = ", ".join(sorted({KIND_LABELS.get(h[0], h[0]) for h in hits}))
        match_rows.append((acct, kinds, cases.account(acct)))
    overrides = OverrideLog(verdicts_dir, hook=on_action)
    env = _env()
    env.globals["csrf"] = csrf
    plots: dict[str, str] = {}
    plots_lock = threading.Lock()

    def cached(key: str, make: Callable[[], str]) -> str:
        with plots_lock:
            if key in plots:
                return plots[key]
        value = make()
        with plots_lock:
            if len(plots) >= _PLOT_CACHE_MAX:
                plots.pop(next(iter(plots)))
            plots[key] = value
        return value

    def campaign_plots(campaign_id: str) -> tuple[str, str]:
        c = cases.campaign(campaign_id)
        flagged = c.first_flagged_ts if c is not None else None

        def graph() -> str:
            accounts, attrs, edges = cases.links(campaign_id, max_accounts=_GRAPH_ACCOUNTS)
            # Relative links, so that the console works under any mount prefix.
            return graph_svg(
                accounts, attrs, edges, href=lambda a: f"../accounts/{quote(a, safe='')}"
            )

        return (
            cached(f"g:{campaign_id}", graph),
            cached(
                f"t:{campaign_id}",
                lambda: traffic_svg(
                    cases.traffic(campaign_id=campaign_id),
                    flagged,
                    title=f"Campaign {campaign_id}: events per {_span(cases.bucket)}",
                ),
            ),
        )

    def warm() -> None:
        # Render the plots of the top campaigns ahead of the first visit.
        for c in cases.campaigns()[:warm_campaigns]:
            campaign_plots(c.campaign_id)

    if warm_campaigns > 0 and warm_now:
        warm()
    elif warm_campaigns > 0:
        threading.Thread(target=warm, name="console-warm", daemon=True).start()

    app = FastAPI(title="distillguard console", docs_url=None, redoc_url=None)
    app.state.cases = cases
    app.state.overrides = overrides

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        base = str(request.scope.get("root_path", "")).rstrip("/")
        html = env.get_template(name).render(
            base=base, done=request.query_params.get("done"), totals=cases.totals(), **ctx
        )
        return HTMLResponse(html, status_code=status)

    def not_found(request: Request, what: str) -> HTMLResponse:
        return render(request, "missing.html.j2", status=404, what=what)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        latest = overrides.latest()
        return render(
            request,
            "index.html.j2",
            title="Campaigns",
            campaigns=cases.campaigns(),
            loners=cases.flagged(limit=100),
            latest=latest,
            matches=match_rows,
            matched=len(matches),
            overview=cached(
                "overview",
                lambda: traffic_svg(
                    cases.traffic(),
                    None,
                    title=f"All traffic and the campaigns' share, events per {_span(cases.bucket)}",
                    overlay=cases.campaign_traffic(),
                    height=2.0,
                    width=1100,
                ),
            ),
        )

    @app.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
    def campaign(request: Request, campaign_id: str) -> HTMLResponse:
        c = cases.campaign(campaign_id)
        if c is None:
            return not_found(request, f"campaign {campaign_id}")
        accounts = cases.members(campaign_id, limit=_GRAPH_ACCOUNTS)
        graph, traffic = campaign_plots(campaign_id)
        caps = cases.capabilities(campaign_id=campaign_id)
        shown, hidden = fold_attributes(cases.attributes(campaign_id, limit=2000))
        return render(
            request,
            "campaign.html.j2",
            title=f"Campaign {campaign_id}",
            c=c,
            graph=graph,
            traffic=traffic,
            templates=cases.templates(campaign_id),
            caps=caps,
            cap_total=sum(n for _, n in caps) or 1,
            attrs=shown,
            hidden=hidden,
            members=cases.members(campaign_id, limit=300),
            latest=overrides.latest(),
            shown_accounts=len(accounts),
        )

    @app.get("/accounts/{account_id}", response_class=HTMLResponse)
    def account(request: Request, account_id: str) -> HTMLResponse:
        a = cases.account(account_id)
        if a is None:
            return not_found(request, f"account {account_id}")
        traffic = cached(
            f"a:{account_id}",
            lambda: traffic_svg(
                cases.traffic(account_id=account_id),
                a.first_flagged_ts,
                title=f"Account {account_id}: events per {_span(cases.bucket)}",
                height=2.0,
            ),
        )
        caps = cases.capabilities(account_id=account_id)
        a_shown, a_hidden = fold_attributes(cases.account_attributes(account_id))
        return render(
            request,
            "account.html.j2",
            title=f"Account {account_id}",
            a=a,
            traffic=traffic,
            caps=caps,
            cap_total=sum(n for _, n in caps) or 1,
            attrs=a_shown,
            hidden=a_hidden,
            matches=matches.get(account_id, []),
            history=overrides.history(account_id),
        )

    async def _form(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", errors="replace")
        return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}

    async def _action_form(request: Request) -> tuple[dict[str, str], str]:
        """The posted form and its console action (400 for any other)."""
        form = await _form(request)
        action = form.get("action", "")
        if action not in CONSOLE_ACTIONS:
            raise HTTPException(400, f"Unknown action {action!r}; use block, unblock or benign.")
        return form, action

    def _done(request: Request, kind: str, name: str, action: str) -> Response:
        """Back to the page of what the action was taken on (`kind`: accounts, campaigns)."""
        base = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{base}/{kind}/{quote(name, safe='')}?done={action}",
                                status_code=303)

    @app.post("/accounts/{account_id}/action")
    async def account_action(request: Request, account_id: str) -> Response:
        form, action = await _action_form(request)
        if cases.account(account_id) is None:
            raise HTTPException(404, f"No account {account_id} in this log.")
        await run_in_threadpool(overrides.record, [account_id], action, by=form.get("by", ""), note=form.get("note", ""))
        return _done(request, "accounts", account_id, action)

    @app.post("/campaigns/{campaign_id}/action")
    async def campaign_action(request: Request, campaign_id: str) -> Response:
        form, action = await _action_form(request)
        if cases.campaign(campaign_id) is None:
            raise HTTPException(404, f"No campaign {campaign_id} in these verdicts.")
        members = [m.account_id for m in cases.members(campaign_id)]
        note = form.get("note", "") or f"campaign {campaign_id}"
        await run_in_threadpool(overrides.record, members, action, by=form.get("by", ""), note=note)
        return _done(request, "campaigns", campaign_id, action)

    @app.get("/campaigns/{campaign_id}/casefile.html", response_class=HTMLResponse)
    def casefile(campaign_id: str) -> HTMLResponse:
        if cases.campaign(campaign_id) is None:
            raise HTTPException(404, f"No campaign {campaign_id} in these verdicts.")
        return HTMLResponse(casefile_html(cases, campaign_id))

    @app.get("/campaigns/{campaign_id}/casefile.pdf")
    def casefile_pdf_route(campaign_id: str) -> Response:
        if cases.campaign(campaign_id) is None:
            raise HTTPException(404, f"No campaign {campaign_id} in these verdicts.")
        return Response(
            casefile_pdf(cases, campaign_id),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="case-{campaign_id}.pdf"'},
        )

    @app.get("/campaigns/{campaign_id}/stix.json")
    def stix(campaign_id: str) -> Response:
        if cases.campaign(campaign_id) is None:
            raise HTTPException(404, f"No campaign {campaign_id} in these verdicts.")
        bundle = export_bundle(cases, campaign_id)
        return Response(
            bundle.serialize(pretty=True),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="indicators-{campaign_id}.json"'
            },
        )

    @app.get("/campaigns/{campaign_id}/members.csv")
    def members_csv(campaign_id: str) -> Response:
        if cases.campaign(campaign_id) is None:
            raise HTTPException(404, f"No campaign {campaign_id} in these verdicts.")
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(
            [
                "account_id",
                "score",
                "action",
                "override",
                "events",
                "events_before_flag",
                "first_flagged_ts",
                "ips",
                "reasons",
            ]
        )
        latest = overrides.latest()
        for m in cases.members(campaign_id):
            o = latest.get(m.account_id)
            w.writerow(
                [
                    m.account_id,
                    m.score,
                    m.action,
                    o.action if o else "",
                    m.events,
                    m.events_before_flag,
                    m.first_flagged_ts.isoformat() if m.first_flagged_ts else "",
                    m.ips,
                    " | ".join(m.reasons),
                ]
            )
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="members-{campaign_id}.csv"'},
        )

    @app.get("/api/campaigns")
    def api_campaigns() -> list[dict[str, Any]]:
        return [
            {
                "campaign_id": c.campaign_id,
                "score": c.score,
                "accounts": c.accounts,
                "events": c.events,
                "first_flagged_ts": c.first_flagged_ts.isoformat() if c.first_flagged_ts else None,
                "harvest_before_flag": c.harvest_before_flag,
                "reasons": c.reasons,
            }
            for c in cases.campaigns()
        ]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _span(width: Any) -> str:
    seconds = int(width.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day" + ("s" if seconds // 86400 > 1 else "")
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour" + ("s" if seconds // 3600 > 1 else "")
    return f"{seconds // 60} minutes"
