"""Policy per declared end user: stricter than the account where judged apart, never milder,
except on an account whose flag applies to its flagged end users only."""

from __future__ import annotations

from distillguard.enforce import Policy


def _policy() -> Policy:
    p = Policy()
    p.apply_verdicts([
        {"account_id": "reseller", "action": "throttle", "campaign_id": "C001",
         "end_users_apart": True},
        {"account_id": "hydra", "action": "block", "campaign_id": "C001"},
        {"account_id": "quiet", "action": "allow"},
    ])
    p.apply_end_user_verdicts([
        {"account_id": "reseller", "end_user": "op-1", "action": "block", "campaign_id": "eu-C001",
         "reasons": '["carries the traffic of campaign C001"]'},
        {"account_id": "reseller", "end_user": "cust-1", "action": "allow"},
        {"account_id": "quiet", "end_user": "op-9", "action": "throttle"},
        {"account_id": "hydra", "end_user": "u1", "action": "allow"},
    ])
    return p


def test_a_flagged_end_user_is_refused_with_a_message_naming_it() -> None:
    d = _policy().decide("reseller", "op-1")
    assert d.blocked and d.end_user == "op-1"
    msg = d.block_message("reseller")
    assert "op-1" in msg and "reseller" in msg and "other end users are served" in msg


def test_a_narrowed_account_serves_its_other_customers_and_keeps_its_flag_without_one() -> None:
    p = _policy()
    assert p.decide("reseller", "cust-1").action == "allow"
    assert p.decide("reseller", "someone-new").action == "allow"
    assert p.decide("reseller").action == "throttle"


def test_an_end_user_makes_an_account_stricter_never_milder() -> None:
    p = _policy()
    assert p.decide("quiet", "op-9").action == "throttle"
    assert p.decide("quiet", "other").action == "allow"
    # a blocked account stays blocked whatever end user a request names (rotating ids)
    for user in ("u1", "u2", None):
        assert p.decide("hydra", user).blocked


def test_an_override_on_the_account_wins_over_its_end_users() -> None:
    from datetime import UTC, datetime

    from distillguard.enforce import Override

    p = _policy()
    p.set_override(Override("reseller", "benign", datetime.now(UTC)))
    assert p.decide("reseller", "op-1").action == "allow"
    # an end user back to allow drops its decision
    assert p.apply_end_user_verdicts([{"account_id": "quiet", "end_user": "op-9", "action": "allow"}]) == 1
    assert p.decide("quiet", "op-9").action == "allow"
