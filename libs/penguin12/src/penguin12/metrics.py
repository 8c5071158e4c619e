"""Prometheus metrics for every service, with small fixed label sets.

Workers have no web framework, so `serve_worker_http` exposes `/metrics`, `/livez` and `/readyz`
on a small port of their own; the APIs mount the same registry on their FastAPI app.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("penguin12.metrics")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

HTTP_REQUESTS = Counter(
    "penguin12_http_requests_total",
    "HTTP requests by route and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "penguin12_http_request_duration_seconds",
    "HTTP request latency by route.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
JOBS_SUBMITTED = Counter(
    "penguin12_jobs_submitted_total",
    "Submissions by outcome (accepted or why refused).",
    ["outcome"],
)
EVIDENCE_FINDINGS = Counter(
    "penguin12_evidence_findings_total",
    "Findings read from uploads' own metadata, by source and finding code (fixed sets: see "
    "penguin12.evidence).",
    ["source", "finding"],
)
MESSAGES = Counter(
    "penguin12_messages_total",
    "Kafka records handled by a worker, by outcome (ok, failed, dead_lettered).",
    ["outcome"],
)
PROCESSING_LATENCY = Histogram(
    "penguin12_processing_seconds",
    "Time the worker spent on one consumed batch until its outputs were handed to the producer "
    "(decode, cache, model, encode): what a record waits for in this stage.",
    buckets=_LATENCY_BUCKETS,
)
DELIVERY_LATENCY = Histogram(
    "penguin12_delivery_seconds",
    "Time from a batch's outputs handed to the producer to the broker's last acknowledgement; "
    "the batch's offsets are stored only then (at-least-once).",
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "penguin12_batch_size", "Records per processed batch.", buckets=(1, 2, 4, 8, 16, 32, 64)
)
CONSUMER_LAG = Gauge(
    "penguin12_consumer_lag",
    "Records not yet consumed, per partition (from librdkafka statistics).",
    ["topic", "partition"],
)
ASSIGNED_PARTITIONS = Gauge(
    "penguin12_assigned_partitions",
    "Partitions this consumer owns now, per topic: 0 on a replica means it is surplus (scale-out).",
    ["topic"],
)
BACKLOG = Gauge(
    "penguin12_backlog_records",
    "Jobs queued for the feature extractors and not yet done (sum of consumer lag); scale on it.",
    ["topic"],
)
DECODE_QUEUE = Gauge(
    "penguin12_decode_queue",
    "Uploads waiting for room in the decode memory budget.",
)
DECODE_MEMORY = Gauge(
    "penguin12_decode_memory_bytes",
    "Estimated memory held by decodes in progress (of the decode budget).",
)
DECODE_REFUSED = Counter(
    "penguin12_decode_refused_total",
    "Uploads refused before decoding: over the per-image budget, queue full, waited too long.",
    ["reason"],
)
CACHE_REQUESTS = Counter(
    "penguin12_embedding_cache_total",
    "Embedding cache lookups by result (hit, miss, error).",
    ["result"],
)
BACKBONE_IMAGES = Counter(
    "penguin12_backbone_images_total", "Images that went through the CNN backbone (cache misses)."
)
JOBS_FINISHED = Counter(
    "penguin12_jobs_finished_total", "Jobs reaching a final state, by status.", ["status"]
)
JOB_LATENCY = Histogram(
    "penguin12_job_duration_seconds",
    "End-to-end job latency, from submission to its final state.",
    ["status"],
    buckets=_JOB_BUCKETS,
)
MODEL_INFO = Gauge(
    "penguin12_model_info",
    "The loaded model (value 1).",
    ["name", "version", "architecture", "demo"],
)


class _Handler(BaseHTTPRequestHandler):
    ready: Callable[[], bool] = staticmethod(lambda: False)

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif self.path == "/livez":
            self._send(200, b'{"status":"ok"}', "application/json")
        elif self.path == "/readyz":
            ok = self.ready()
            body = b'{"status":"ready"}' if ok else b'{"status":"not ready"}'
            self._send(200 if ok else 503, body, "application/json")
        else:
            self._send(404, b'{"detail":"not found"}', "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # scrapes every few seconds would drown the log


def serve_worker_http(
    port: int, ready: Callable[[], bool], host: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    """Serve /metrics, /livez and /readyz from a daemon thread."""
    handler = type("WorkerHandler", (_Handler,), {"ready": staticmethod(ready)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("metrics and health on http://%s:%d/metrics", host, server.server_address[1])
    return server
