"""STIX 2.1 indicator sharing: export, import into a store, load as match sets, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stix2
from stix2patterns.validator import validate as validate_pattern
from typer.testing import CliRunner

from casesample import write_sample_case
from distillguard._errors import ConfigError
from distillguard.cases import CaseStore, campaign_indicators, export_bundle, write_bundle
from distillguard.cli import app
from distillguard.share import import_bundle, load_indicators, pattern_for, share_hash
from distillguard.traffic import read_table


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CaseStore]:
    log, verdicts = write_sample_case(tmp_path_factory.mktemp("stix"))
    return log, verdicts, CaseStore(log, verdicts)


def _members(verdicts: Path, campaign: str) -> set[str]:
    v = read_table(verdicts, "verdicts")
    return {
        a
        for a, c in zip(v["account_id"].to_pylist(), v["campaign_id"].to_pylist(), strict=True)
        if c == campaign
    }


def test_bundle_round_trip(case: tuple[Path, Path, CaseStore], tmp_path: Path) -> None:
    log, verdicts, store = case
    bundle = export_bundle(store, "C1", producer="Provider A")
    path = write_bundle(bundle, tmp_path / "c1.json")
    text = path.read_text()
    # Re-parses as STIX 2.1; every pattern is valid STIX patterning.
    parsed = stix2.parse(text, allow_custom=True)
    types = [o["type"] for o in parsed.objects]
    assert types.count("identity") == 1 and types.count("campaign") == 1
    indicators = [o for o in parsed.objects if o["type"] == "indicator"]
    assert types.count("relationship") == len(indicators) > 0
    for ind in indicators:
        assert validate_pattern(ind["pattern"], stix_version="2.1"), ind["pattern"]
        assert ind["spec_version"] == "2.1"
    # Payment instruments and e-mail domains leave only hashed.
    assert "pay_7f3a9c" not in text and "mailbox-relay.example" not in text
    assert share_hash("payment", "pay_7f3a9c") in text

    shared = {(v.kind, v.value) for v in campaign_indicators(store, "C1")}
    loaded = load_indicators(path)
    assert set(loaded.by_value) == shared
    assert {"template", "net24", "payment", "email", "user_agent"} <= {k for k, _ in shared}
    # Same through a store: import, then load the store.
    report = import_bundle(path, tmp_path / "store")
    assert report.indicators == len(indicators) and report.skipped == 0
    again = import_bundle(path, tmp_path / "store")
    assert again.added == 0  # idempotent
    from_store = load_indicators(tmp_path / "store")
    assert set(from_store.by_value) == shared
    # Matching the log pre-flags exactly the campaign's accounts.
    matches = from_store.match_accounts(log)
    assert set(matches["account_id"].to_pylist()) == _members(verdicts, "C1")
    assert from_store.match_ip("203.0.113.200") and not from_store.match_ip("203.0.114.1")
    assert from_store.match_payment("pay_7f3a9c") and not from_store.match_payment("pay_other")
    assert from_store.match_email_domain("MAILBOX-relay.example")


def test_only_specific_values_are_shared(case: tuple[Path, Path, CaseStore]) -> None:
    log, verdicts, store = case
    # C3's mined template is also how one benign student opens prompts (4 of 5 users): kept
    # out; C1's is used by its members alone.
    (c3,) = store.mined_templates("C3")
    assert store.template_users([c3.fingerprint or ""]) == {c3.fingerprint: 5}
    assert ("template", c3.fingerprint) not in {
        (v.kind, v.value) for v in campaign_indicators(store, "C3")
    }
    (c1,) = store.mined_templates("C1")
    assert ("template", c1.fingerprint) in {
        (v.kind, v.value) for v in campaign_indicators(store, "C1")
    }
    # C2's curl agent is used by 7 members and 2 benign developers (7/9 < 0.8): not shared.
    values = {(v.kind, v.value) for v in campaign_indicators(store, "C2")}
    assert ("user_agent", "curl/8.4.0") not in values
    assert ("net24", "198.51.100.0/24") in values
    lenient = {(v.kind, v.value) for v in campaign_indicators(store, "C2", min_specificity=0.5)}
    assert ("user_agent", "curl/8.4.0") in lenient
    # Each C2 member has its own payment instrument: all shared, hashed.
    payments = [v for v in campaign_indicators(store, "C2") if v.kind == "payment"]
    assert len(payments) == len(_members(verdicts, "C2"))


def test_partner_bundle_with_foreign_patterns(tmp_path: Path) -> None:
    ident = stix2.Identity(name="Partner B", identity_class="organization")
    camp = stix2.Campaign(name="hydra")
    ours = stix2.Indicator(
        pattern="[ipv4-addr:value = '198.51.100.9' OR ipv4-addr:value = '198.51.100.10']",
        pattern_type="stix",
        created_by_ref=ident.id,
    )
    ranged = stix2.Indicator(
        pattern="[ipv6-addr:value ISSUBSET '2001:db8::/32']", pattern_type="stix"
    )
    foreign = stix2.Indicator(pattern="[domain-name:value = 'evil.example']", pattern_type="stix")
    joint = stix2.Indicator(
        pattern="[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']",
        pattern_type="stix",
    )
    agent = stix2.Indicator(pattern=pattern_for("user_agent", "it's/1.0"), pattern_type="stix")
    bundle = stix2.Bundle(ident, camp, ours, ranged, foreign, joint, agent)
    path = tmp_path / "partner.json"
    path.write_text(bundle.serialize())
    ind = load_indicators(path)
    assert ind.ips == {"198.51.100.9", "198.51.100.10"}
    assert ind.match_ip("2001:db8::1") and not ind.match_ip("2001:db9::1")
    assert ind.user_agents == {"it's/1.0"}
    assert ind.skipped == 2  # a domain name, and an AND we cannot check per value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "report"}))
    with pytest.raises(ConfigError, match="not a STIX 2.1 bundle"):
        import_bundle(bad, tmp_path / "store")
    with pytest.raises(ConfigError, match="No STIX bundle or indicator store"):
        load_indicators(tmp_path / "missing.json")


def test_share_commands(case: tuple[Path, Path, CaseStore], tmp_path: Path) -> None:
    log, verdicts, _ = case
    runner = CliRunner()
    out = tmp_path / "c2.json"
    result = runner.invoke(
        app, ["share", "export", str(log), str(verdicts), "--campaign", "C2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "indicators" in result.output and out.exists()
    matches = tmp_path / "matches.parquet"
    result = runner.invoke(
        app,
        [
            "share",
            "import",
            str(out),
            "--store",
            str(tmp_path / "store"),
            "--log",
            str(log),
            "--out",
            str(matches),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "7 accounts" in result.output
    import pyarrow.parquet as pq

    assert set(pq.read_table(matches)["account_id"].to_pylist()) == _members(verdicts, "C2")
    result = runner.invoke(
        app, ["share", "export", str(log), str(verdicts), "--campaign", "C9", "--out", str(out)]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
