"""The pre-aggregated case store, and case files (HTML and PDF) on a hand-built log."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from casesample import write_sample_case
from distillguard._errors import ConfigError
from distillguard.cases import CaseStore, casefile_html, write_casefile
from distillguard.cases._casedata import fold_attributes, mined_fingerprint
from distillguard.cli import app
from distillguard.traffic import read_table


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CaseStore]:
    log, verdicts = write_sample_case(tmp_path_factory.mktemp("case"))
    return log, verdicts, CaseStore(log, verdicts)


def test_campaigns_ranked_with_numbers_from_the_log(case: tuple[Path, Path, CaseStore]) -> None:
    log, verdicts, store = case
    events = read_table(log, "events")
    v = read_table(verdicts, "verdicts")
    campaign_of = dict(zip(v["account_id"].to_pylist(), v["campaign_id"].to_pylist(), strict=True))
    flag_of = dict(zip(v["account_id"].to_pylist(), v["first_flagged_ts"].to_pylist(), strict=True))
    per_campaign: Counter[str] = Counter()
    before: Counter[str] = Counter()
    for acct, ts in zip(events["account_id"].to_pylist(), events["ts"].to_pylist(), strict=True):
        cid = campaign_of.get(acct)
        if cid is None:
            continue
        per_campaign[cid] += 1
        if flag_of[acct] is None or ts < flag_of[acct]:
            before[cid] += 1

    campaigns = store.campaigns()
    scores = [c.score for c in campaigns]
    assert scores == sorted(scores, reverse=True)
    assert {c.campaign_id for c in campaigns} == set(per_campaign)
    for c in campaigns:
        assert c.events == per_campaign[c.campaign_id]
        assert c.events_before_flag == before[c.campaign_id]
        assert c.accounts == sum(1 for x in campaign_of.values() if x == c.campaign_id)
        assert sum(n for _, n in store.traffic(campaign_id=c.campaign_id)) == c.events
        assert sum(n for _, n in store.capabilities(campaign_id=c.campaign_id)) == c.events
    totals = store.totals()
    assert totals["events"] == events.num_rows
    assert totals["campaigns"] == 3


def test_shared_attributes_and_their_specificity(case: tuple[Path, Path, CaseStore]) -> None:
    _, _, store = case
    attrs = {(a.kind, a.value): a for a in store.attributes("C1")}
    net = attrs[("net24", "203.0.113.0/24")]
    assert (net.members, net.accounts) == (14, 14)
    assert attrs[("payment", "pay_7f3a9c")].members == 14
    # C2's agent is also used by two benign developers: shared, but not specific.
    c2 = {(a.kind, a.value): a for a in store.attributes("C2")}
    curl = c2[("user_agent", "curl/8.4.0")]
    assert (curl.members, curl.accounts) == (7, 9)
    # The classroom NAT address is not a campaign's, but the account page shows who shares it.
    nat = {a.value: a for a in store.account_attributes("user-000")}["100.64.0.1"]
    assert nat.accounts == 5
    shown, hidden = fold_attributes(store.attributes("C1"), per_kind=3)
    assert not any(a.kind == "ip" for a in shown)  # all inside the shared range
    assert hidden["ip"] >= 40


def test_templates_and_graph(case: tuple[Path, Path, CaseStore]) -> None:
    log, _, store = case
    (t1,) = store.templates("C1")
    assert (t1.template_id, t1.source, t1.accounts) == ("T1", "detector", 14)
    assert t1.example.startswith("Solve step by step")
    mined = store.mined_templates("C2")
    assert mined[0].accounts == 7
    # The SQL fingerprint of a mined template is the Python one of any of its prompts.
    events = read_table(log, "events")
    c2_prompts = events.filter(pc.starts_with(events["account_id"], "c2-"))["prompt"]
    assert {mined_fingerprint(p) for p in c2_prompts.to_pylist()} == {mined[0].fingerprint}
    accounts, attrs, edges = store.links("C1")
    assert len(accounts) == 14
    nodes = {a.account_id for a in accounts} | {f"{a.kind}:{a.value}" for a in attrs}
    assert all(e.src in nodes and e.dst in nodes for e in edges)
    assert any(e.dst == "net24:203.0.113.0/24" for e in edges)


def test_casefile_html_is_self_contained(case: tuple[Path, Path, CaseStore]) -> None:
    _, _, store = case
    html = casefile_html(store, "C2")
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"(src|href)=\"https?://", html)
    assert html.count("<svg") == 2
    c2 = store.campaign("C2")
    assert c2 is not None
    for reason in c2.reasons:
        assert reason in html
    for m in store.members("C2"):
        assert m.account_id in html
    assert "pay_" not in html.split("Indicators for sharing")[1].split("Member accounts")[0]
    with pytest.raises(ConfigError, match="no campaign 'nope'"):
        casefile_html(store, "nope")


def test_casefile_command_writes_html_and_pdf(
    case: tuple[Path, Path, CaseStore], tmp_path: Path
) -> None:
    log, verdicts, _ = case
    result = CliRunner().invoke(
        app, ["casefile", str(log), str(verdicts), "--campaign", "C1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    pdf = (tmp_path / "case-C1.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 4  # summary, graph, traffic, members
    assert "Campaign C1" in (tmp_path / "case-C1.html").read_text()
    paths = write_casefile(log, verdicts, "C3", tmp_path, pdf=False)
    assert [p.name for p in paths] == ["case-C3.html"]
