"""Prometheus metrics (prometheus-client), served on an optional HTTP port (metrics.port).

Each server owns its CollectorRegistry, so several servers (tests) live in one process. Names:

    qwen_edge_queue_depth                       gauge      requests waiting for the engine
    qwen_edge_in_flight                         gauge      generations running on the engine
    qwen_edge_model_loaded                      gauge      1 once the model is loaded
    qwen_edge_model_load_seconds                gauge
    qwen_edge_generations_total{outcome}        counter    ok | cancelled | deadline_exceeded |
                                                           rejected | invalid | unavailable |
                                                           error | stalled (client stopped reading)
    qwen_edge_stage_seconds{stage}              histogram  queue | prompt_encode | step |
                                                           vae_decode | image_encode | engine |
                                                           total
    qwen_edge_previews_total{result}            counter    sent | skipped (superseded, lossy)
    qwen_edge_preview_bytes_total               counter
    qwen_edge_image_bytes_total                 counter    final images sent
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "cancelled", "deadline_exceeded", "rejected", "invalid", "unavailable", "error")
STAGES = ("queue", "prompt_encode", "step", "vae_decode", "image_encode", "engine", "total")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The server's metrics on a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("qwen_edge_queue_depth", "Requests waiting for the engine",
                                 registry=r)
        self.in_flight = Gauge("qwen_edge_in_flight", "Generations running on the engine",
                               registry=r)
        self.model_loaded = Gauge("qwen_edge_model_loaded", "1 once the model is loaded",
                                  registry=r)
        self.model_load_seconds = Gauge("qwen_edge_model_load_seconds",
                                        "Time the model took to load", registry=r)
        self.generations = Counter("qwen_edge_generations", "Generate calls by outcome",
                                   ["outcome"], registry=r)
        self.stage_seconds = Histogram("qwen_edge_stage_seconds", "Latency per stage", ["stage"],
                                       buckets=_BUCKETS, registry=r)
        self.previews = Counter("qwen_edge_previews", "Previews by result", ["result"],
                                registry=r)
        self.preview_bytes = Counter("qwen_edge_preview_bytes", "Preview bytes sent", registry=r)
        self.image_bytes = Counter("qwen_edge_image_bytes", "Final image bytes sent", registry=r)
        for o in OUTCOMES:  # export zeros so dashboards see every series from the start
            self.generations.labels(o)
        for s in STAGES:
            self.stage_seconds.labels(s)
        for res in ("sent", "skipped"):
            self.previews.labels(res)
        self._http: Any = None

    def observe(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(max(0.0, seconds))

    def outcome(self, outcome: str) -> None:
        self.generations.labels(outcome).inc()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (tests, STATUS lines); 0.0 when absent."""
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else float(v)

    def start_http(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0 = any free port); returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        bound = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
