"""Prometheus metrics of one gateway app (its own registry, so several apps in a process do not clash)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vlserve_http_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("vlserve_http_request_duration_seconds", "time to answer, by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("vlserve_http_errors", "error answers, by error type (docs/errors.md)", ["type"],
                              registry=self.registry)
        self.in_flight = Gauge("vlserve_http_in_flight", "requests being worked on (VLSERVE_MAX_IN_FLIGHT bounds it)",
                               registry=self.registry)
        self.triton_rows = Histogram("vlserve_triton_request_rows",
                                     "rows per embedding request the gateway sends Triton, by Triton model "
                                     "(concurrent calls share requests: VLSERVE_EMBED_COALESCE)",
                                     ["model"], buckets=ROW_BUCKETS, registry=self.registry)
        self.triton_ready = Gauge("vlserve_triton_ready", "1 while Triton answers and is ready", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
