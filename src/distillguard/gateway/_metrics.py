"""What operators watch: Prometheus metrics of a replica (`GET /metrics`) and of the detector.

Each gateway and each detector service owns a registry (not prometheus-client's global one),
so several in one process (tests) never mix. Counts the request path updates are counters
and a histogram; everything else (capture, spool, verdicts, detector state) is read from the
objects at scrape time, costing the request path nothing.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

#: latency buckets in seconds: sub-millisecond gateway overhead up to slow upstreams
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayMetrics:
    """A replica's metrics; `collect` reads capture, policy and the follower at scrape time."""

    def __init__(self, gateway: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("distillguard_requests", "Requests answered, by API, HTTP status and policy action.",
                                ["api", "status", "action"], registry=self.registry)
        self.latency = Histogram("distillguard_request_seconds", "Time to answer (to the response's start for streams), by API.",
                                 ["api"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.refusals = Counter("distillguard_limit_refusals", "Requests refused by a rate limit, by scope and budget.",
                                ["scope", "budget"], registry=self.registry)
        self.limits_failed = Counter("distillguard_limits_failed_open",
                                     "Requests served unchecked because their limits call failed or ran past its deadline.",
                                     registry=self.registry)
        self.registry.register(_GatewayState(gateway))
        self._children: dict[tuple[str, int, str], Any] = {}
        self._latency: dict[str, Any] = {}

    def observe(self, api: str, status: int, action: str, seconds: float) -> None:
        # labels() looks its child up under a lock each call; the children are cached here
        key = (api, status, action)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(api, str(status), action)
        child.inc()
        h = self._latency.get(api)
        if h is None:
            h = self._latency[api] = self.latency.labels(api)
        h.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _GatewayState:
    def __init__(self, gw: Any) -> None:
        self.gw = gw

    def collect(self) -> Iterable[Metric]:
        cap = self.gw.capture
        yield GaugeMetricFamily("distillguard_capture_queue_depth", "Captured events waiting in memory for the database.",
                                value=cap.queue.qsize())
        yield CounterMetricFamily("distillguard_capture_rows_written", "Captured events written to the database.", value=cap.written)
        yield CounterMetricFamily("distillguard_capture_rows_set_aside", "Captured events the database refused, kept in dead_events.",
                                  value=cap.set_aside)
        yield CounterMetricFamily("distillguard_capture_rows_dropped", "Captured events dropped by a full memory queue (no spool).",
                                  value=cap.dropped)
        spool = cap.spool
        yield CounterMetricFamily("distillguard_capture_rows_spooled", "Captured events made durable in the local spool.",
                                  value=spool.appended if spool is not None else 0)
        yield GaugeMetricFamily("distillguard_capture_spool_bytes", "Bytes in the spool not yet drained to the database.",
                                value=spool.size if spool is not None else 0)
        yield CounterMetricFamily("distillguard_capture_spool_refused", "Requests refused (503) because the spool was full.",
                                  value=cap.refused)
        g = GaugeMetricFamily("distillguard_verdicts", "Accounts by the action their current verdict sets.", labels=["action"])
        for action, n in sorted(self.gw.policy.verdict_counts().items()):
            g.add_metric([action], n)
        yield g
        follower = getattr(self.gw, "follower", None)
        if follower is not None:
            yield GaugeMetricFamily("distillguard_verdict_version", "The fleet verdicts' version this replica applied.",
                                    value=follower.version)


class DetectorMetrics:
    """The detector service's metrics, read from it at scrape time."""

    def __init__(self, service: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_DetectorState(service))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DetectorState:
    def __init__(self, svc: Any) -> None:
        self.svc = svc

    def collect(self) -> Iterable[Metric]:
        s = self.svc
        yield GaugeMetricFamily("distillguard_detector_leading", "1 while this detector holds the lock and runs.", value=int(s.leading))
        yield CounterMetricFamily("distillguard_detector_events", "Captured events folded into the detector.", value=s.events_seen)
        yield GaugeMetricFamily("distillguard_detector_lag_seconds",
                                "How far the newest event folded in is behind the clock.", value=s.lag_s)
        yield GaugeMetricFamily("distillguard_detector_cursor", "Capture seq folded in up to.", value=s.cursor)
        yield GaugeMetricFamily("distillguard_detector_resumed_from", "Capture seq of the checkpoint this detector resumed from (0: none).",
                                value=s.restored_from or 0)
        yield GaugeMetricFamily("distillguard_detector_version", "Verdict version last published.", value=s.version)
        g = GaugeMetricFamily("distillguard_detector_verdicts", "Accounts by the action last published.", labels=["action"])
        for action, n in sorted(Tally(v[0] for v in list(s.published.values())).items()):
            g.add_metric([action], n)
        yield g
