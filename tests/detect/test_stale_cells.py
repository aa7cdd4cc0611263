"""A cell found while its accounts were in no campaign gives them up once a campaign holds them.

Cells are looked for at most every `cells.every_minutes`; between looks the last answer is
reused. Four accounts of a hydra that form a cell at one look, joined before the next look by
four more that tie all eight into one graph campaign, stay in that campaign: a reused look
that took them back would split it into two campaigns of four, each under
`actions.min_campaign_accounts`, and the four the cell did not hold would only be monitored
(seen on the gateway when a campaign's batches were judged in two detection steps)."""

from __future__ import annotations

from datetime import timedelta

from distillguard.detect import OnlineDetector
from distillguard.detect._communities import refine_campaigns
from distillguard.detect._config import load_config
from distillguard.detect._output import verdict_table

from .builders import T0, account, account_table, event_table, events
from .scenes import HYDRA_PROMPT, HYDRA_SYSTEM

FLAGGED = ("throttle", "degrade", "block")


def _hydra(first: range, start_minutes: float) -> list[dict[str, object]]:
    return [r for a in first for r in events(
        f"h{a}", 40, start=T0 + timedelta(minutes=start_minutes, seconds=5 * a), every=timedelta(seconds=30),
        ip="203.0.113.7", system=HYDRA_SYSTEM, prompt=HYDRA_PROMPT)]


def test_a_reused_cell_look_does_not_split_the_campaign_that_now_holds_its_accounts() -> None:
    cfg = load_config()
    accts = [account(f"h{a}", created=T0 - timedelta(days=2), channel="education", email="mail-hub.io",
                     payment="card-7" if a % 2 == 0 else "card-9", verified=False) for a in range(8)]
    det = OnlineDetector(cfg, accounts=account_table(accts))
    seen = []
    for batch in (_hydra(range(4), 0), _hydra(range(4, 8), 25)):
        det.update(event_table(batch))
        a = refine_campaigns(det.assess(), cfg.links.min_accounts)
        seen.append({r["account_id"]: r for r in verdict_table(det.state, a, cfg, None).to_pylist()})
    first, both = seen
    assert {first[f"h{a}"]["action"] for a in range(4)} <= set(FLAGGED)  # the cell, at the first look
    assert cfg.cells.every_minutes * 60 > 25 * 60 + 40 * 30  # the second decision reuses that look
    assert len({both[f"h{a}"]["campaign_id"] for a in range(8)}) == 1, both
    assert all(both[f"h{a}"]["action"] in FLAGGED for a in range(8)), {k: v["action"] for k, v in both.items()}
