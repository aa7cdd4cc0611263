"""The console's pages and actions through FastAPI's test client."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

import distillguard.ui
from distillguard._errors import ConfigError
from distillguard.cases import CaseStore
from distillguard.ui import Override, OverrideLog, admin_api_hook, create_app


def test_exports_are_listed() -> None:
    public = {n for n in dir(distillguard.ui) if not n.startswith("_")}
    assert set(distillguard.ui.__all__) == public - {"annotations"}


def test_index_ranks_campaigns_by_score(
    sample_case: tuple[Path, Path], sample_store: CaseStore
) -> None:
    client = TestClient(create_app(*sample_case, store=sample_store, warm_campaigns=0))
    html = client.get("/").text
    order = [html.index(f'/campaigns/{c}"') for c in ("C1", "C2", "C3")]
    assert order == sorted(order)
    assert "14 accounts share prompt template T1" in html
    assert client.get("/api/campaigns").json()[0]["campaign_id"] == "C1"


def test_campaign_page_shows_graph_traffic_templates_and_focus(
    sample_case: tuple[Path, Path], sample_store: CaseStore
) -> None:
    client = TestClient(create_app(*sample_case, store=sample_store, warm_campaigns=0))
    r = client.get("/campaigns/C2")
    assert r.status_code == 200
    html = r.text
    graph = html[html.index('<svg xmlns="http://www.w3.org/2000/svg" viewBox') :]
    graph = graph[: graph.index("</svg>")]
    nodes = re.findall(r'<a href="\.\./accounts/(c2-acct-\d+)"', graph)
    assert sorted(nodes) == [f"c2-acct-{i:02d}" for i in range(7)]
    assert "198.51.100.0/24" in graph
    assert "Write a Python function that" in html  # the template's example prompt
    assert re.search(r"<span>code</span>.*?100%", html, re.S)  # capability focus
    assert "flagged 2026-03-03 06:00 UTC" in html  # the flag line of the traffic plot
    assert client.get("/campaigns/nope").status_code == 404
    rows = client.get("/campaigns/C2/members.csv").text.splitlines()
    assert rows[0].startswith("account_id,score,action,override,events")
    assert sorted(r.split(",")[0] for r in rows[1:]) == [f"c2-acct-{i:02d}" for i in range(7)]


def test_account_page_shows_reasons_and_numbers(
    sample_case: tuple[Path, Path], sample_store: CaseStore
) -> None:
    client = TestClient(create_app(*sample_case, store=sample_store, warm_campaigns=0))
    html = client.get("/accounts/c1-acct-03").text
    a = sample_store.account("c1-acct-03")
    assert a is not None
    for reason in a.reasons:
        assert reason.replace("'", "&#39;") in html
    assert f"<dd>{a.events:,} ({a.events_before_flag:,} before the flag)</dd>" in html
    assert "mailbox-relay.example" in html
    assert "<dt>shared range</dt><dd>203.0.113.0/24</dd>" in html  # structured evidence
    assert client.get("/accounts/nobody").status_code == 404


def test_actions_are_recorded_and_handed_to_the_hook(fresh_case: tuple[Path, Path]) -> None:
    log, verdicts = fresh_case
    seen: list[Sequence[Override]] = []
    client = TestClient(create_app(log, verdicts, on_action=seen.append, warm_campaigns=0))
    r = client.post(
        "/accounts/user-003/action",
        data={"action": "benign", "by": "ana", "note": "teacher"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/accounts/user-003?done=benign"
    r = client.post("/campaigns/C3/action", data={"action": "block"}, follow_redirects=False)
    assert r.status_code == 303
    client.post("/accounts/c3-acct-01/action", data={"action": "unblock"})
    assert client.post("/accounts/user-003/action", data={"action": "delete"}).status_code == 400

    lines = [json.loads(x) for x in (verdicts / "overrides.jsonl").read_text().splitlines()]
    assert [(x["account_id"], x["action"]) for x in lines] == [
        ("user-003", "benign"),
        *[(f"c3-acct-{i:02d}", "block") for i in range(4)],
        ("c3-acct-01", "allow"),
    ]
    assert lines[0]["by"] == "ana" and lines[0]["note"] == "teacher"
    assert lines[1]["note"] == "campaign C3" and lines[0]["ts"].endswith("Z")
    assert [len(batch) for batch in seen] == [1, 4, 1]
    latest = OverrideLog(verdicts).latest()
    assert latest["c3-acct-01"].action == "allow" and latest["c3-acct-02"].action == "block"
    # The pages show the decisions.
    assert "teacher" in client.get("/accounts/user-003").text
    campaign = client.get("/campaigns/C3").text
    # C3's verdicts are all `throttle`: the block badges are the three standing overrides.
    assert campaign.count('<span class="badge block">block</span>') == 3
    assert campaign.count('<span class="badge allow">allow</span>') == 1


def test_mounted_under_a_prefix(sample_case: tuple[Path, Path], sample_store: CaseStore) -> None:
    parent = FastAPI()
    parent.mount("/console", create_app(*sample_case, store=sample_store, warm_campaigns=0))
    client = TestClient(parent)
    html = client.get("/console/").text
    assert 'href="/console/campaigns/C1"' in html
    page = client.get("/console/campaigns/C1").text
    assert 'action="/console/campaigns/C1/action"' in page
    assert client.get("/console/campaigns/C1/stix.json").json()["type"] == "bundle"
    casefile = client.get("/console/campaigns/C1/casefile.html").text
    assert "Case file: distillation campaign C1" in casefile


def test_pages_are_fast_once_started(
    sample_case: tuple[Path, Path], sample_store: CaseStore
) -> None:
    client = TestClient(create_app(*sample_case, store=sample_store, warm_campaigns=0))
    client.get("/campaigns/C1")  # first render of the plots (cached afterwards)
    for url in ("/", "/campaigns/C1", "/accounts/c1-acct-00", "/accounts/user-001"):
        t0 = time.perf_counter()
        assert client.get(url).status_code == 200
        assert time.perf_counter() - t0 < 1.0, url


def test_admin_api_hook_applies_actions_through_the_gateway(fresh_case: tuple[Path, Path]) -> None:
    received: list[dict[str, Any]] = []
    gateway = FastAPI()

    @gateway.post("/admin/overrides", status_code=201)
    def add(body: dict[str, Any], authorization: str = Header("")) -> dict[str, Any]:
        if authorization != "Bearer s3cret":
            raise HTTPException(401, "wrong admin token")
        received.append(body)
        return body

    log, verdicts = fresh_case
    hook = admin_api_hook("http://gw", "s3cret", client=TestClient(gateway))
    console = TestClient(create_app(log, verdicts, on_action=hook, warm_campaigns=0))
    console.post("/campaigns/C2/action", data={"action": "block", "by": "ana"})
    assert sorted(r["account_id"] for r in received) == [f"c2-acct-{i:02d}" for i in range(7)]
    assert {(r["action"], r["by"], r["note"]) for r in received} == {
        ("block", "ana", "campaign C2")
    }
    wrong = admin_api_hook("http://gw", "nope", client=TestClient(gateway))
    with pytest.raises(ConfigError, match="refused the override for c2-acct-00 \\(401\\)"):
        wrong([OverrideLog(verdicts).read()[0]])


def test_minimal_inputs_jsonl_log_without_optional_tables(tmp_path: Path) -> None:
    """Events as JSONL, no accounts, verdicts only: campaigns come from verdicts' campaign_id."""
    from casesample import write_sample_case
    from distillguard.traffic import LogWriter, read_table

    log, verdicts = write_sample_case(tmp_path / "full")
    slim_log, slim_verdicts = tmp_path / "log", tmp_path / "verdicts"
    with LogWriter(slim_log, fmt="jsonl") as w:
        w.write("events", read_table(log, "events"))
    v = read_table(verdicts, "verdicts").drop_columns(["evidence"])
    with LogWriter(slim_verdicts) as w:
        w.write("verdicts", v)
    client = TestClient(create_app(slim_log, slim_verdicts, warm_campaigns=0))
    html = client.get("/").text
    assert all(f'/campaigns/{c}"' in html for c in ("C1", "C2", "C3"))
    page = client.get("/campaigns/C1")
    assert page.status_code == 200
    assert "Mined from the first words" in page.text  # no templates table
    assert "payment instrument" not in page.text.split("Shared attributes")[1][:3000]
    assert client.get("/accounts/c1-acct-00").status_code == 200


def test_ui_command_serves_the_console(
    sample_case: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from distillguard.cli import app as cli

    served: dict[str, Any] = {}
    # Capture the app instead of blocking on a server; then drive it with the test client.
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.delenv("DISTILLGUARD_UI_TOKEN", raising=False)
    monkeypatch.setenv("COLUMNS", "400")
    result = CliRunner().invoke(cli, ["ui", *map(str, sample_case), "--port", "8765"])
    assert result.exit_code == 0, result.output
    assert served["port"] == 8765 and served["host"] == "127.0.0.1"
    # behind a token: a browser gets in with the one-time link printed, never with the token
    client = TestClient(served["app"], base_url="https://testserver")  # the cookie is Secure
    assert client.get("/campaigns/C1").status_code == 401
    link = re.search(r"http://127\.0\.0\.1:8765(/\?login=[\w-]+)", result.output)
    assert link is not None, result.output
    assert client.get(link.group(1), follow_redirects=False).status_code == 303
    assert "Campaign C1" in client.get("/campaigns/C1").text
    monkeypatch.setenv("DISTILLGUARD_UI_TOKEN", "chosen-ui-token-0123456789")
    assert CliRunner().invoke(cli, ["ui", *map(str, sample_case)]).exit_code == 0
    bearer = {"authorization": "Bearer chosen-ui-token-0123456789"}
    assert "Campaign C1" in TestClient(served["app"]).get("/campaigns/C1", headers=bearer).text
    result = CliRunner().invoke(cli, ["ui", str(sample_case[0]), str(tmp_path)])
    assert result.exit_code != 0
    assert "no verdicts table" in str(result.exception)


def test_partner_indicators_pre_flag_accounts(
    sample_case: tuple[Path, Path], sample_store: CaseStore, tmp_path: Path
) -> None:
    from distillguard.cases import export_bundle, write_bundle

    bundle = write_bundle(
        export_bundle(sample_store, "C2", producer="Partner"), tmp_path / "b.json"
    )
    client = TestClient(
        create_app(*sample_case, store=sample_store, warm_campaigns=0, indicators=bundle)
    )
    html = client.get("/").text
    section = html[html.index('id="matches-h"') :]
    assert "Accounts matching shared indicators (7)" in section
    listed = re.findall(r'href="/accounts/([^"]+)"', section)
    assert sorted(listed) == [f"c2-acct-{i:02d}" for i in range(7)]
    page = client.get("/accounts/c2-acct-03").text
    assert "Matches indicators shared by partners" in page and "198.51.100.0/24" in page
    assert "Matches indicators" not in client.get("/accounts/user-007").text  # curl, not shared
