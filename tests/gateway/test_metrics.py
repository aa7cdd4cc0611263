"""`/metrics`: a replica's counts in the Prometheus text format, read back with prometheus-client's parser."""

from __future__ import annotations

import time
from pathlib import Path

from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway import DetectorMetrics, DetectorService, GatewayConfig, Store

from .support import keyed_client, metric_samples, scrape

PER_MINUTE = 3  # the account's request budget


def test_a_replica_counts_requests_refusals_latency_and_capture(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = GatewayConfig(db=db, detect=False, capture_interval=0.02, spool_dir=tmp_path / "spool",
                        limits=LimitsConfig(account=LimitSet(PER_MINUTE, None, None, None)))
    with keyed_client(cfg, "metered") as (c, gw):
        codes = [c.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": f"m{i}"}]}).status_code
                 for i in range(PER_MINUTE + 2)]
        assert codes == [200] * PER_MINUTE + [429, 429]
        deadline = time.monotonic() + 10
        while gw.capture.written < len(codes):
            assert time.monotonic() < deadline, "capture did not drain"
            time.sleep(0.05)
        m = scrape(c)
    api = ("api", "chat.completions")
    assert m[("distillguard_requests_total", (("action", "allow"), api, ("status", "200")))] == PER_MINUTE
    assert m[("distillguard_requests_total", (("action", "allow"), api, ("status", "429")))] == 2
    assert m[("distillguard_limit_refusals_total", (("budget", "requests_per_minute"), ("scope", "account")))] == 2
    assert m[("distillguard_request_seconds_count", (api,))] == PER_MINUTE + 2
    assert m[("distillguard_capture_rows_spooled_total", ())] == PER_MINUTE + 2  # refusals are captured too
    assert m[("distillguard_capture_rows_written_total", ())] == PER_MINUTE + 2
    assert m[("distillguard_capture_rows_dropped_total", ())] == 0
    assert m[("distillguard_capture_queue_depth", ())] == 0


def test_the_detector_reports_lead_events_and_lag(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    store.insert_events([{"event_id": f"e{i}", "ts_us": 1_700_000_000_000_000 + i * 1_000_000, "account_id": "a", "model": "m",
                          "prompt": "hello", "status": 200} for i in range(5)])
    svc = DetectorService(store, clock=lambda: 1_700_000_010_000_000)
    svc.restore()
    svc.step()
    svc.step()  # the first step only sees the capture's top (see DetectorService.step)
    m = metric_samples(DetectorMetrics(svc).render().decode())
    assert m[("distillguard_detector_events_total", ())] == 5
    assert m[("distillguard_detector_leading", ())] == 0  # stepped by hand, not leading
    assert m[("distillguard_detector_lag_seconds", ())] == 6.0  # newest event at +4 s, clock at +10 s
