"""Each evidence module on hand-built logs: one account that must trigger it, one that must not.

Also the registry's contract (every module has its config section and declared columns) and
the decision step that combines the modules' tables.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from distillguard.detect import OnlineDetector
from distillguard.detect._config import DetectConfig, load_config
from distillguard.detect._core import Assessment
from distillguard.detect._decision import join
from distillguard.detect._evidence import (
    EVIDENCE_MODULES,
    ROLE_COLUMNS,
    EvidenceTable,
    build_modules,
)

from . import scenes
from .builders import SDK, T0, account, account_table, event_table, events

Scene = tuple[list[dict[str, object]], list[dict[str, object]]]
ELICIT = ["Solve step by step and show your work: {i} times {j}.",
          "Think step by step, then grade your own answer against rubric {j}: {i} minus {j}."]
SYSTEM = "You are the operator's solver. Always reason step by step."


def configured(section: str, **values: Any) -> DetectConfig:
    """The shipped config with some `[evidence.<section>]` values changed (validated)."""
    raw = load_config().model_dump()
    raw["evidence"][section].update(values)
    return DetectConfig.model_validate(raw)


def assessed(*parts: Scene, cfg: DetectConfig | None = None,
             partners: set[str] | None = None, idle_accounts: int = 0,
             ) -> tuple[OnlineDetector, Assessment]:
    """The detector after all the scenes' events as one batch, and its assessment.

    `idle_accounts` adds accounts that send nothing (at a big webmail provider): a population
    in which a domain shared by a handful of accounts is rare, as on a real platform.
    """
    accts = [a for p in parts for a in p[1]]
    accts += [account(f"idle{i}", email="gmail.com") for i in range(idle_accounts)]
    det = OnlineDetector(cfg or load_config(), accounts=account_table(accts), partners=partners)
    det.update(event_table([r for p in parts for r in p[0]]))
    return det, det.assess()


def group(prefix: str, n: int = 6, each: int = 40, *, ips: list[str] | None = None,
          card: str | None = None, email: str | None = None, created_days: float = 400,
          verified: bool = True, system: str | None = SYSTEM,
          prompt: list[str] | None = None) -> Scene:
    """`n` scripted, eliciting accounts that share a system prompt and whatever else is given
    (addresses rotated from `ips`, one card, one e-mail domain); otherwise each has its own
    address, card and domain, and sign-ups hours apart (no sign-up burst)."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for a in range(n):
        aid = f"{prefix}{a}"
        accts.append(account(aid, created=T0 - timedelta(days=created_days, hours=3 * a),
                             email=email or f"{aid}.example", payment=card, verified=verified))
        rows += events(aid, each, start=T0 + timedelta(minutes=3 * a),
                       every=timedelta(minutes=9), ip=ips or f"198.18.{a}.7", system=system,
                       prompt=prompt or ELICIT, ua=SDK, completion_tokens=1024, max_tokens=1024)
    return rows, accts


def column(det: OnlineDetector, a: Assessment, module: str, name: str, aid: str) -> float:
    return float(a.evidence[module][name][det.state.index[aid]])


def joined(det: OnlineDetector, a: Assessment, aid: str) -> bool:
    assert a.join is not None
    return bool(a.join.joined[det.state.index[aid]])


POOL = ["203.0.113.1", "203.0.113.2"]


# -- the registry -------------------------------------------------------------------------


def test_every_module_has_a_config_section_and_its_roles_columns() -> None:
    modules = build_modules(load_config())
    assert [type(m) for m in modules] == list(EVIDENCE_MODULES)
    for m in modules:
        # Its own config section ([evidence.<section>], or [cells]) with an on/off switch.
        assert hasattr(m.settings, "enabled"), m.name
        assert tuple(m.columns)[: len(ROLE_COLUMNS[m.role])] == ROLE_COLUMNS[m.role], m.name


def test_every_table_has_the_declared_columns_one_row_per_account() -> None:
    det, a = assessed(scenes.hydra(), scenes.classroom())
    for m in det.core.modules:
        t = a.evidence[m.name]
        assert list(t.columns) == list(m.columns), m.name
        assert all(len(v) == det.state.size for v in t.columns.values()), m.name


def test_a_table_refuses_undeclared_columns() -> None:
    fresh = build_modules(load_config())[EVIDENCE_MODULES.index(
        next(c for c in EVIDENCE_MODULES if c.name == "fresh"))]
    with pytest.raises(ValueError, match="declares"):
        fresh.table(fires=np.zeros(2, bool))
    with pytest.raises(KeyError, match="no column 'nope'"):
        _ = EvidenceTable("fresh", {"fires": np.zeros(2, bool)})["nope"]


# -- links ----------------------------------------------------------------------------------


def test_address_link_fires_on_a_rotating_pool_not_behind_a_nat() -> None:
    # Only the module's own rule decides here: no address is harvest-like enough to pass
    # without churn.
    cfg = configured("ip", proxy_min_key_harvest=1.0)
    det, a = assessed(group("pool", ips=POOL), group("nat", ips=["192.0.2.80"]), cfg=cfg)
    assert column(det, a, "link.ip", "pairs", "pool0") > 0
    assert column(det, a, "link.ip", "weight", "pool0") == 1.0
    assert column(det, a, "link.ip", "pairs", "nat0") == 0
    assert column(det, a, "link.ip", "weight", "nat0") == 0.0


def test_template_link_fires_on_a_shared_system_prompt() -> None:
    own = group("own", n=1, system="A prompt nobody else sends.",
                prompt=["Derive the closed form of series {i} with ratio {j}, every step shown."])
    det, a = assessed(group("op"), own)
    assert column(det, a, "link.template", "pairs", "op0") > 0
    assert column(det, a, "link.template", "pairs", "own0") == 0


def test_payment_link_fires_on_a_shared_card() -> None:
    det, a = assessed(scenes.hydra())
    # Even-numbered hydra accounts share card-7; odd ones have a card each.
    assert column(det, a, "link.payment", "pairs", "h0") > 0
    assert column(det, a, "link.payment", "pairs", "h1") == 0


def test_email_link_fires_on_a_rare_shared_domain_and_joins_with_a_template() -> None:
    """Six accounts tied by a system prompt and an e-mail domain only: the domain is the
    second kind of link that makes them a campaign. Spread over six domains they are not.
    (A domain that more than 1 % of accounts use never links: the idle population makes
    six accounts rare.)"""
    det, a = assessed(group("mail", email="ops-lab.io"), group("spread"), idle_accounts=700)
    assert column(det, a, "link.email", "pairs", "mail0") > 0
    assert column(det, a, "link.email", "pairs", "spread0") == 0
    assert joined(det, a, "mail0") and a.component[det.state.index["mail0"]] >= 0
    assert not joined(det, a, "spread0")


APP_SYSTEM = "You are the assistant of a small internal tools app. Answer briefly."
CALM = ["Add type hints to this Python function and keep it short:\n\ndef f{i}(x): return x + {j}",
        "Add type hints to this Python function and keep it short:\n\ndef g{j}(s): return s * {i}"]


def test_a_weak_link_counts_only_for_an_account_that_asks_like_a_harvester() -> None:
    """A developer on the campaign's e-mail domain who sends its (public) system prompt, but
    asks his own coding chores from a script (harvest-like enough to be eligible): the domain is
    not his evidence (`min_own_asks`), so a template alone does not join him. Counted for
    everyone, it would."""
    ops = group("mail", email="ops-lab.io", system=APP_SYSTEM)
    dev = (events("dev", 40, start=T0 + timedelta(minutes=1), every=timedelta(minutes=9),
                  ip="198.19.3.3", system=APP_SYSTEM, prompt=CALM, ua=SDK),
           [account("dev", created=T0 - timedelta(days=300), email="ops-lab.io", verified=False)])
    det, a = assessed(ops, dev, idle_accounts=700)
    assert a.harvest[det.state.index["dev"]] >= det.config.actions.min_member_harvest
    assert joined(det, a, "mail0") and column(det, a, "link.email", "pairs", "mail0") > 0
    assert column(det, a, "link.email", "pairs", "dev") == 0
    assert column(det, a, "link.template", "pairs", "dev") > 0
    assert not joined(det, a, "dev")
    det, a = assessed(ops, dev, idle_accounts=700, cfg=configured("email", min_own_asks=0.0))
    assert column(det, a, "link.email", "pairs", "dev") > 0 and joined(det, a, "dev")
    # What an account asks is judged from own_asks_min_events requests on; before, it counts.
    det, a = assessed(ops, dev, idle_accounts=700, cfg=configured("email", own_asks_min_events=41))
    assert column(det, a, "link.email", "pairs", "dev") > 0


def test_a_populous_domain_never_links() -> None:
    det, a = assessed(group("mail", email="ops-lab.io"))  # 6 of 6 accounts: common here
    assert column(det, a, "link.email", "pairs", "mail0") == 0


def test_signup_link_fires_on_accounts_opened_in_one_hour() -> None:
    det, a = assessed(scenes.hydra(), scenes.enterprise())
    # h1..h11 opened between 23:49 and 23:59 two days before their first request.
    assert column(det, a, "link.created", "pairs", "h1") > 0
    assert column(det, a, "link.created", "pairs", "ent") == 0


# -- corroboration --------------------------------------------------------------------------


def test_fresh_accounts_tied_by_a_template_join_aged_ones_do_not() -> None:
    """New, unverified, eliciting accounts that share only a system prompt: `fresh` is the
    second kind of evidence. The same accounts aged and verified are one kind short."""
    det, a = assessed(group("new", created_days=3, verified=False),
                      group("aged", system=SYSTEM + " Be brief."))
    assert column(det, a, "fresh", "fires", "new0") == 1
    assert column(det, a, "fresh", "weight", "new0") == 1.0
    assert column(det, a, "fresh", "fires", "aged0") == 0
    assert a.join is not None
    assert joined(det, a, "new0") and a.join.weight[det.state.index["new0"]] == 2.0
    assert not joined(det, a, "aged0") and a.join.weight[det.state.index["aged0"]] == 1.0


def test_fresh_does_not_fire_when_turned_off() -> None:
    det, a = assessed(group("new", created_days=3, verified=False),
                      cfg=configured("fresh", enabled=False))
    assert column(det, a, "fresh", "fires", "new0") == 0
    assert not joined(det, a, "new0")


def test_partner_match_fires_for_the_matched_account_only() -> None:
    det, a = assessed(group("op"), partners={"op0"})
    assert column(det, a, "partner", "fires", "op0") == 1
    assert column(det, a, "partner", "fires", "op1") == 0
    # Linked by the template, the partner match is its second kind of evidence.
    assert joined(det, a, "op0") and not joined(det, a, "op1")


# -- requirement ------------------------------------------------------------------------------


def test_thin_accounts_need_a_third_kind_of_link() -> None:
    """Accounts with 3 requests each (under harvest.min_events): a proxy pool and a system
    prompt are two kinds of link, enough for established accounts and not for thin ones; a
    shared card makes three."""
    thin_two = group("two", each=3, ips=POOL)
    thin_three = group("three", each=3, ips=["203.0.113.5", "203.0.113.6"], card="card-9",
                       system=SYSTEM + " Number every step.")
    established = group("est", each=40, ips=["203.0.113.8", "203.0.113.9"],
                        system=SYSTEM + " Check every step.")
    det, a = assessed(thin_two, thin_three, established)
    for aid, need in (("two0", 3.0), ("three0", 3.0), ("est0", 2.0)):
        assert column(det, a, "thin", "need", aid) == need, aid
    assert a.join is not None
    assert a.join.weight[det.state.index["two0"]] == 2.0 and not joined(det, a, "two0")
    assert a.join.weight[det.state.index["three0"]] == 3.0 and joined(det, a, "three0")
    assert a.join.weight[det.state.index["est0"]] == 2.0 and joined(det, a, "est0")


def test_thin_rule_turned_off_lets_two_kinds_join() -> None:
    det, a = assessed(group("two", each=3, ips=POOL), cfg=configured("thin", enabled=False))
    assert column(det, a, "thin", "need", "two0") == 2.0
    assert joined(det, a, "two0")


# -- the decision step --------------------------------------------------------------------------


def _tables(**cols: dict[str, list[float]]) -> dict[str, EvidenceTable]:
    out = {}
    for name, c in cols.items():
        out[name.replace("_", ".", 1) if name.startswith("link_") else name] = EvidenceTable(
            name, {k: np.asarray(v) for k, v in c.items()})
    return out


def test_join_sums_links_and_adds_the_strongest_corroboration_once() -> None:
    modules = build_modules(load_config())
    m = 4
    zeros = [0.0] * m
    tables = _tables(
        link_template={"pairs": [3, 3, 0, 3], "weight": [1.0, 1.0, 0.0, 1.0]},
        link_ip={"pairs": [2, 0, 0, 0], "weight": [1.0, 0.0, 0.0, 0.0]},
        link_payment={"pairs": zeros, "weight": zeros},
        link_email={"pairs": zeros, "weight": zeros},
        link_created={"pairs": zeros, "weight": zeros},
        fresh={"fires": [False, True, True, False], "weight": [0.0, 1.0, 1.0, 0.0]},
        partner={"fires": [False, True, False, False], "weight": [0.0, 1.0, 0.0, 0.0]},
        sync={"fires": [False] * m, "weight": zeros, "key": [-1] * m, "accounts": zeros,
              "r_utc": zeros, "r_local": zeros},
        thin={"need": [2.0, 2.0, 2.0, 3.0], "thin": [False, False, False, True]},
    )
    j = join(modules, tables, m)
    # template + ip; template + (fresh or partner: counted once); fresh alone (no link);
    # template alone on a thin account.
    assert j.weight.tolist() == [2.0, 2.0, 0.0, 1.0]
    assert j.joined.tolist() == [True, True, False, False]
    assert j.linked.tolist() == [True, True, False, True]
    # Tied by more than a prompt and a sign-up hour: an address, or a corroboration.
    assert j.tied.tolist() == [True, True, True, False]


# -- after the campaigns: small campaigns and carriers --------------------------------------


def test_cells_table_names_the_members_and_the_carrier_of_a_small_campaign() -> None:
    det, a = assessed(scenes.cell(), scenes.team())
    for aid in ("op0", "op1"):
        assert column(det, a, "cells", "cell", aid) >= 0 and column(det, a, "cells", "score", aid) > 0
    assert column(det, a, "cells", "carries", "op-reseller") == 1
    # Colleagues tied by an office, a card and a domain send no harvest-like template.
    assert column(det, a, "cells", "cell", "dev0") == -1
    assert column(det, a, "cells", "carries", "dev0") == 0
    # Their reasons name the module.
    reasons = {r["account_id"]: r["reasons"] for r in det.verdicts().to_pylist()}
    assert "evidence that throttles on its own: cells: member of a small campaign" in reasons["op0"]
    assert "cells: carries a campaign's traffic" in reasons["op-reseller"]


def test_carriers_table_names_the_reseller_of_a_blocked_campaign_not_the_eval_runner() -> None:
    det, a = assessed(scenes.hydra(prompts=scenes.REPERTOIRE), scenes.reseller("carrier", 0.3),
                      scenes.eval_runner())
    assert column(det, a, "carriers", "carries", "carrier") == 1
    assert column(det, a, "carriers", "templates", "carrier") >= 10
    assert column(det, a, "carriers", "carries", "eval") == 0
    assert column(det, a, "carriers", "peer", "eval") == -1


def test_carriers_turned_off_carry_nobody() -> None:
    det, a = assessed(scenes.hydra(prompts=scenes.REPERTOIRE), scenes.reseller("carrier", 0.3),
                      cfg=configured("carriers", enabled=False))
    assert column(det, a, "carriers", "carries", "carrier") == 0
