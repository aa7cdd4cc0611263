"""Campaign assembly: hydra accounts are linked and blocked; look-alike legitimate users are not."""

from __future__ import annotations

import json

import polars as pl

from distillguard.detect import OnlineDetector

from . import scenes
from .builders import account_table, event_table


def _verdicts(*parts: tuple[list[dict[str, object]], list[dict[str, object]]]) -> pl.DataFrame:
    rows = [r for p in parts for r in p[0]]
    accts = [a for p in parts for a in p[1]]
    det = OnlineDetector(accounts=account_table(accts))
    det.update(event_table(rows))
    frame = pl.from_arrow(det.verdicts())
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_hydra_is_one_campaign_and_blocked_beside_hard_negatives() -> None:
    v = _verdicts(scenes.hydra(), scenes.classroom(), scenes.enterprise(), scenes.eval_runner())
    hydra = v.filter(pl.col("account_id").str.starts_with("h"))
    assert hydra["action"].to_list() == ["block"] * 12
    assert hydra["campaign_id"].n_unique() == 1 and hydra["campaign_id"][0] is not None
    others = v.filter(~pl.col("account_id").str.starts_with("h"))
    assert set(others["action"].to_list()) <= {"allow", "monitor"}
    assert others["campaign_id"].null_count() == others.height


def test_reasons_name_the_shared_links_with_numbers() -> None:
    v = _verdicts(scenes.hydra())
    reasons = json.loads(v.filter(pl.col("account_id") == "h0")["reasons"][0])
    text = " ".join(reasons)
    assert "campaign" in text and "address 203.0.113." in text
    assert "payment fingerprint card-7" in text
    assert any("requests/day" in r for r in reasons)
    # The evidence modules that counted, each with its weight, and the total against the bar.
    weighed = next(r for r in reasons if r.startswith("evidence weighed:"))
    assert "link.ip 1.0" in weighed and "link.payment 1.0" in weighed
    assert "2.0 needed: joins a campaign" in weighed
    evidence = json.loads(v.filter(pl.col("account_id") == "h0")["evidence"][0])["evidence"]
    assert evidence["weights"]["link.ip"] == 1.0 and evidence["joined"] is True


def test_two_unrelated_clusters_are_two_campaigns() -> None:
    a_rows, a_accts = scenes.hydra(prefix="ha")
    b_rows, b_accts = scenes.hydra(prefix="hb")
    # The second operator has its own proxies, cards and e-mail domain.
    for r in b_rows:
        r["ip"] = str(r["ip"]).replace("203.0.113.", "100.64.9.")
        r["system"] = "You are a senior engineer. Give full reasoning."
        r["prompt"] = "Implement in Rust: " + str(r["prompt"])
    for acc in b_accts:
        acc["payment_fingerprint"] = "card-99" if acc["payment_fingerprint"] == "card-7" else acc["payment_fingerprint"]
        acc["email_domain"] = "other-hub.net"
        acc["created_at"] = acc["created_at"] - __import__("datetime").timedelta(days=3)  # type: ignore[operator]
    v = _verdicts((a_rows, a_accts), (b_rows, b_accts))
    ca = v.filter(pl.col("account_id").str.starts_with("ha"))["campaign_id"].unique().to_list()
    cb = v.filter(pl.col("account_id").str.starts_with("hb"))["campaign_id"].unique().to_list()
    assert len(ca) == 1 and len(cb) == 1 and ca != cb


def test_a_lone_harvest_like_account_is_only_monitored() -> None:
    rows, accts = scenes.hydra(n_accounts=1)
    v = _verdicts((rows, accts))
    assert v["action"].to_list() == ["monitor"]


def test_a_reseller_carrying_a_campaign_is_throttled_and_one_sharing_a_slice_is_not() -> None:
    v = _verdicts(scenes.hydra(prompts=scenes.REPERTOIRE), scenes.reseller("carrier", 0.3),
                  scenes.reseller("slice", 0.1))
    hydra_campaign = v.filter(pl.col("account_id") == "h0")["campaign_id"][0]
    carrier = v.filter(pl.col("account_id") == "carrier").row(0, named=True)
    # Throttled, not blocked: most of a reseller's traffic is its customers' own.
    assert carrier["action"] == "throttle"
    assert carrier["campaign_id"] == hydra_campaign is not None
    assert any("carries the traffic of campaign" in r for r in json.loads(carrier["reasons"]))
    sliced = v.filter(pl.col("account_id") == "slice").row(0, named=True)
    assert sliced["action"] in ("allow", "monitor") and sliced["campaign_id"] is None


def test_online_a_block_confirms_a_throttle_that_held() -> None:
    from distillguard.detect._config import load_config

    h_rows, h_accts = scenes.hydra()
    cut = len(h_rows) // 2
    h_rows.sort(key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]
    for escalate in (True, False):
        base = load_config()
        cfg = base.model_copy(update={"actions": base.actions.model_copy(
            update={"block_after_throttle_minutes": 15.0 if escalate else 0.0})})
        det = OnlineDetector(cfg, accounts=account_table(h_accts))
        det.update(event_table(h_rows[:5]))
        assert set(pl.from_arrow(det.verdicts())["action"].to_list()) <= {"allow", "monitor"}  # type: ignore[union-attr]
        det.update(event_table(h_rows[5:cut]))
        first = pl.from_arrow(det.verdicts())
        det.update(event_table(h_rows[cut:]))
        second = pl.from_arrow(det.verdicts())
        assert isinstance(first, pl.DataFrame) and isinstance(second, pl.DataFrame)
        h0 = pl.col("account_id") == "h0"
        assert first.filter(h0)["action"][0] == ("throttle" if escalate else "block")
        assert second.filter(h0)["action"][0] == "block"


def test_an_account_that_keeps_eliciting_joins_its_campaign_even_with_a_human_profile() -> None:
    from datetime import timedelta

    from distillguard.detect._config import load_config

    from .builders import BROWSER, HUMAN_PROMPTS, T0, account, events

    rows, accts = scenes.hydra()
    pool = [f"203.0.113.{i}" for i in range(2)]
    # Both share the hydra's proxies and templates from a browser, slowly, multi-turn; one asks
    # for step-by-step answers every time, the other once in four requests.
    for aid, prompts in (("careful", scenes.HYDRA_PROMPT[:2]),
                         ("dabbler", scenes.HYDRA_PROMPT[:1] + HUMAN_PROMPTS[:3])):
        rows += events(aid, 40, start=T0 + timedelta(hours=1), every=timedelta(hours=2), ip=pool,
                       ua=BROWSER, turns=3, completion_tokens=200, prompt=prompts)
        accts.append(account(aid, verified=True))
    base = load_config()
    for threshold, careful_joins in ((0.5, True), (1.01, False)):
        cfg = base.model_copy(update={"links": base.links.model_copy(
            update={"member_min_elicitation": threshold})})
        det = OnlineDetector(cfg, accounts=account_table(accts))
        det.update(event_table(rows))
        a = det.assess()
        careful, dabbler = det.state.index["careful"], det.state.index["dabbler"]
        assert a.harvest[careful] < cfg.actions.min_member_harvest  # a human-looking profile
        assert (a.component[careful] >= 0) == careful_joins
        assert a.component[dabbler] < 0


def test_a_stranger_in_the_burst_hour_sending_a_campaign_prompt_is_not_blocked() -> None:
    """Signed up (verified) in the hydra's sign-up hour through the same channel and sending
    one of its prompts: two kinds of link, but both can be chance. Throttled with the campaign, never
    blocked; the hydra itself (addresses, cards, e-mail) is blocked."""
    from datetime import timedelta

    from .builders import T0, account, events

    rows = events("stranger", 8, start=T0 + timedelta(hours=3), every=timedelta(minutes=30),
                  system=scenes.HYDRA_SYSTEM, prompt=scenes.HYDRA_PROMPT[:1], ip="192.0.2.77")
    stranger = account("stranger", created=T0 - timedelta(days=2, minutes=30),
                       channel="education", email="own-mail.example", verified=True)
    v = _verdicts(scenes.hydra(), (rows, [stranger]))
    row = v.filter(pl.col("account_id") == "stranger")
    assert row["action"][0] == "throttle"
    assert "sign-up burst" in row["reasons"][0]
    hydra = v.filter(pl.col("account_id").str.starts_with("h"))
    assert hydra["action"].to_list() == ["block"] * 12


def _quiet_operator() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """A second operator on the same public prompts, with its own addresses, card and domain
    and a much more human-looking profile (browsers, follow-ups, short answers)."""
    from datetime import timedelta

    from .builders import BROWSER, HUMAN_PROMPTS, T0, account, events

    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for k in range(10):
        aid = f"q{k}"
        accts.append(account(aid, created=T0 - timedelta(days=90, minutes=k), email="quiet-ops.net",
                             payment="card-q", verified=True))
        rows += events(aid, 300, start=T0 + timedelta(hours=k), every=timedelta(minutes=9),
                       ip=["198.18.0.1", "198.18.0.2", "198.18.0.3"][k % 3:] + ["198.18.0.1"],
                       system=scenes.HYDRA_SYSTEM, prompt=scenes.HYDRA_PROMPT + HUMAN_PROMPTS[:3],
                       ua=BROWSER, turns=3, completion_tokens=250)
    return rows, accts


def test_a_merged_component_below_the_block_line_still_blocks_its_strong_operator() -> None:
    """Two operators linked only by shared prompts are one component during the replay; its
    pooled score is diluted by the quieter one. With the block line just above that pooled
    score, the hydra's own infrastructure group (its proxies, cards, domain) still blocks it,
    and the quiet operator is throttled."""
    from distillguard.detect._config import load_config

    parts = [scenes.hydra(), _quiet_operator()]
    rows = [r for p in parts for r in p[0]]
    accts = account_table([a for p in parts for a in p[1]])
    base = OnlineDetector(accounts=accts)
    base.update(event_table(rows))
    merged = base.assess()
    i_h, i_q = base.state.index["h0"], base.state.index["q0"]
    assert merged.component[i_h] == merged.component[i_q] >= 0
    cfg = load_config()
    line = float(merged.campaign_score[i_h]) + 0.005
    cfg = cfg.model_copy(update={"actions": cfg.actions.model_copy(
        update={"block_campaign_score": line})})
    det = OnlineDetector(cfg, accounts=accts)
    det.update(event_table(rows))
    v = pl.from_arrow(det.verdicts())
    assert isinstance(v, pl.DataFrame)
    action = dict(zip(v["account_id"], v["action"], strict=True))
    assert {action[f"h{k}"] for k in range(12)} == {"block"}
    assert {action[f"q{k}"] for k in range(10)} == {"throttle"}
