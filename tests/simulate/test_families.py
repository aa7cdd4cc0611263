"""The family registry (scenarios/families.toml) that benchmarks/family_matrix.py reads stays
consistent with the scenario files: every campaign's family has a role, exactly one family is
sealed, every run names a scenario that exists, and the family scenarios hold their family."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pyarrow.parquet as pq

from distillguard.simulate import Corpora, campaign_family, load_scenario, simulate

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
REGISTRY = tomllib.loads((SCENARIOS / "families.toml").read_text(encoding="utf-8"))


def test_every_campaign_family_has_a_role_and_one_is_sealed() -> None:
    roles = REGISTRY["families"]
    assert set(roles.values()) <= {"tuning", "held_out", "sealed"}
    assert list(roles.values()).count("sealed") == 1
    families = {campaign_family(c) for c in load_scenario().campaigns}
    for f in sorted(SCENARIOS.glob("*.toml")):
        if f.name != "families.toml":
            families |= {campaign_family(c) for c in load_scenario(f).campaigns}
    assert families <= set(roles), families - set(roles)
    # the new shapes are held out or sealed, never tuned on
    for fam in ("content_only", "single_link_card", "single_link_email", "single_link_signup", "single_link_proxy"):
        assert roles[fam] in ("held_out", "sealed"), fam


def test_runs_and_rows_are_well_formed() -> None:
    for run in REGISTRY["runs"]:
        assert run["scenario"] == "default" or (SCENARIOS / run["scenario"]).is_file(), run
    for row in REGISTRY["rows"]:
        assert set(row["tuned_on"]) <= set(REGISTRY["families"]) and row["detector"]


def test_family_scenarios_hold_their_family() -> None:
    expect = {"family_content_only.toml": {"content_only"}, "family_single_link_card.toml": {"single_link_card"},
              "family_single_link_email_signup.toml": {"single_link_email", "single_link_signup"},
              "sealed_single_link_proxy.toml": {"single_link_proxy"}}
    for name, fams in expect.items():
        s = load_scenario(SCENARIOS / name)
        assert {campaign_family(c) for c in s.campaigns} == fams, name
        assert s.students.accounts and s.judge_lab.accounts and s.benchmark_researcher.accounts
        assert s.oss_app_developer.accounts and s.opt_in_corpora == []


def test_family_scenarios_simulate(tmp_path: Path, corpora: Corpora) -> None:
    for name in ("family_content_only.toml", "family_single_link_card.toml",
                 "family_single_link_email_signup.toml", "sealed_single_link_proxy.toml"):
        s = load_scenario(SCENARIOS / name)
        simulate(tmp_path / name, seed=1, scenario=s, events=6000, corpora=corpora)
        labels = pq.read_table(tmp_path / name / "labels.parquet").to_pydict()
        assert {c for c in labels["campaign_id"] if c} == {c.id for c in s.campaigns}, name
        assert {"student", "judge_lab", "benchmark_researcher", "oss_app_developer"} <= set(labels["persona"]), name
