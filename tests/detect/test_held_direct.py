"""A carried key's direct account that joins a flagged campaign keeps its carrier flagged.

While free, an operator's account that sends a few requests on a template a reseller carries is
the key's direct account (a solo cell). Once it joins a flagged campaign, a flagged account
must have sent the key's other requests `harvest.min_events` times to make the key its own (the
thin accounts of a large campaign send public items a time or two); an account the last look
already held as the key's direct account needs no more: being flagged is more evidence, not
less. On holdout_carried seed 41 the carrier of carried-solo was let go for 7 hours when its
direct account joined the blocked campaign."""

from __future__ import annotations

from datetime import timedelta

from distillguard.detect import OnlineDetector
from distillguard.detect._communities import refine_campaigns
from distillguard.detect._config import load_config
from distillguard.detect._output import verdict_table

from . import scenes
from .builders import HUMAN_PROMPTS, T0, account, account_table, event_table, events

QUIET = ("allow", "monitor")
ITEMS = [
    "Answer problem {i} below and show all your reasoning step by step. A baker sells 48 muffins "
    "in the morning and half as many in the afternoon. How many muffins does she sell?",
    "Work through exercise {i} carefully, explaining each step. Tom has 3 times as many marbles "
    "as Jerry. Together they have 64 marbles. How many marbles does Jerry have?",
]
POOL = [f"203.0.113.{i}" for i in range(8)]  # the hydra's proxies (scenes.hydra)
# The operator account's other requests (none of the templates above or of the hydra's).
OWN = ["Translate sentence {i} of batch {j} into French and list every grammar rule it uses.",
       "Summarise abstract {i} from corpus {j} as three bullet points for the training set."]


def _chats(start_hours: float, n: int) -> list[dict[str, object]]:
    return events("carrier", n, start=T0 + timedelta(hours=start_hours, seconds=10),
                  every=timedelta(seconds=24), prompt=HUMAN_PROMPTS, ip="198.51.100.19",
                  turns=3, completion_tokens=250)


def _actions(direct_first: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Actions at 10 hours and at 14: an operator account sends 4 requests on templates a
    reseller carries 160 of (among 2,100 chats), in the first 10 hours (`direct_first`) or
    only after a hydra sharing its card, domain and proxies has appeared at 10.2 hours."""
    op = account("op0", created=T0 - timedelta(days=2), channel="education", email="mail-hub.io",
                 payment="card-7", verified=False)
    own = events("op0", 60, start=T0 + timedelta(minutes=7), every=timedelta(minutes=9),
                 prompt=OWN, ip=POOL[:1], completion_tokens=1024, max_tokens=1024)
    items = events("op0", 4, start=T0 + timedelta(hours=0 if direct_first else 10.3, minutes=5),
                   every=timedelta(minutes=140 if direct_first else 20), prompt=ITEMS, ip=POOL[:1],
                   completion_tokens=1024, max_tokens=1024)
    carried = events("carrier", 160, start=T0 + timedelta(seconds=30), every=timedelta(minutes=3.7),
                     prompt=ITEMS, ip="198.51.100.19", completion_tokens=1024, max_tokens=1024)
    hydra, accts = scenes.hydra(n_accounts=12, n_events=25, start_hours=10.2)
    accts += [op, account("carrier", channel="reseller", verified=True, email="carrier.example")]
    first = own + carried + _chats(0, 1500) + (items if direct_first else [])
    later = hydra + _chats(10, 600) + ([] if direct_first else items)
    cfg = load_config()
    det = OnlineDetector(cfg, accounts=account_table(accts))
    out = []
    for batch in (first, later):
        det.update(event_table(sorted(batch, key=lambda r: r["ts"])))  # type: ignore[arg-type, return-value]
        a = refine_campaigns(det.assess(), cfg.links.min_accounts)
        out.append({r["account_id"]: r["action"]
                    for r in verdict_table(det.state, a, cfg, None).to_pylist()})
    return out[0], out[1]


def test_the_carrier_stays_flagged_when_its_direct_account_joins_a_campaign() -> None:
    free, joined = _actions(direct_first=True)
    assert free["op0"] == free["carrier"] == "throttle"  # a solo cell and its carrier
    assert joined["op0"] == "block"  # in the hydra's campaign now
    assert joined["carrier"] == "throttle"


def test_a_campaign_member_that_sends_the_key_a_few_times_only_once_flagged_is_not_its_owner() -> None:
    free, joined = _actions(direct_first=False)
    assert free["carrier"] in QUIET  # nobody else sends its templates yet
    assert joined["op0"] in ("throttle", "block")  # flagged with the hydra
    assert joined["carrier"] in QUIET
