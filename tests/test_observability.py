"""Observability end to end: real services, a real Prometheus, a real OTLP trace receiver.

The services run as in `make run` (tests/conftest.py's Stack) with PENGUIN12_OTLP_ENDPOINT set;
Prometheus runs with the project's scrape config (prometheus.yml, pointed at the test ports by
`local_prometheus_config`); the trace receiver is Jaeger built from its Go module (the first run
builds it, which takes minutes: hence the long timeouts here), or the OTel Collector.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_deployment import APP_SERVICES
from test_monitoring_config import dashboard_queries

from conftest import ROOT, Infra, Stack, missing_test_dependency, wait_for
from penguin12_devstack import observability
from penguin12_devstack.ports import free_ports

# Building Jaeger on a fresh machine takes several minutes (then it is cached in .cache/).
pytestmark = pytest.mark.timeout(1800)

PREFERRED_RECEIVER = os.environ.get("PENGUIN12_TRACE_RECEIVER", "jaeger")
# What Grafana substitutes in the dashboard's queries.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "15m", "$__interval": "1s"}
EXPECTED_SPANS = {
    # The decode is deferred to the feature extractor by default (issue #14): the door only
    # checks the header.
    "preprocessor": {"upload", "check_header", "read_evidence", "publish"},
    "feature_extractor": {"extract_features"},
    "classifier": {"classify"},
    "provenance": {"record_status"},
}


@dataclass
class Observed:
    stack: Stack
    prometheus_url: str
    receiver: observability.TraceReceiver

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.prometheus_url}/api/v1/query", params={"query": promql}, timeout=10
        )
        body = response.json()
        assert body["status"] == "success", f"{promql}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture(scope="module")
def observed(
    infra: Infra, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    base = tmp_path_factory.mktemp("observed")
    prom_port, otlp, ui, grpc, health = free_ports(5)
    ports = observability.ObservabilityPorts(
        prometheus=prom_port, otlp_http=otlp, jaeger_ui=ui, jaeger_grpc=grpc, health=health
    )
    receiver = observability.start_trace_receiver(
        cache_dir=ROOT / ".cache" / "observability",
        data_dir=base / "traces",
        log_file=base / "traces.log",
        ports=ports,
        # Jaeger by default; PENGUIN12_TRACE_RECEIVER=otelcol exercises the Collector fallback.
        prefer=PREFERRED_RECEIVER,
    )
    stack = Stack(
        infra,
        model_dir,
        base / "stack",
        extra_env={
            "PENGUIN12_OTLP_ENDPOINT": receiver.otlp_endpoint,
            # Export spans within a fraction of a second instead of every 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    )
    prometheus = None
    try:
        receiver.wait_ready(60)
        stack.start_all(feature_extractors=2)
        targets = {
            "preprocessor": [f"127.0.0.1:{stack.ports['preprocessor']}"],
            "provenance": [f"127.0.0.1:{stack.ports['provenance']}"],
            "feature_extractor": [
                f"127.0.0.1:{stack.ports[f'feature_extractor-{i}']}" for i in range(2)
            ],
            "classifier": [f"127.0.0.1:{stack.ports['classifier']}"],
            "prometheus": [f"127.0.0.1:{prom_port}"],
        }
        config = observability.local_prometheus_config(targets, scrape_interval="1s")
        prometheus = observability.start_prometheus(
            config_file=observability.write_prometheus_config(base / "prometheus.yml", config),
            data_dir=base / "prometheus",
            log_file=base / "prometheus.log",
            port=prom_port,
        )
        prometheus.wait_ready(60)
        yield Observed(stack, f"http://127.0.0.1:{prom_port}", receiver)
    finally:
        if prometheus is not None:
            prometheus.stop()
        stack.stop()
        receiver.stop()


def _push_traffic(stack: Stack, photos: dict[str, bytes]) -> list[str]:
    """Jobs that reach every panel: distinct photos, a repeat (cache hit), refused uploads."""
    names = sorted(photos)[:4]
    ids = [stack.submit(photos[name], name).json()["request_id"] for name in names]
    finals = [stack.wait_final(i) for i in ids]
    assert [f["status"] for f in finals] == ["COMPLETED"] * len(ids), finals
    repeat = stack.submit(photos[names[0]], names[0]).json()["request_id"]
    assert stack.wait_final(repeat)["status"] == "COMPLETED"
    ids.append(repeat)
    refused = stack.submit(b"not an image at all", "notes.txt", "text/plain")
    assert refused.status_code in (415, 422), refused.text
    assert stack.status("00000000-0000-4000-8000-000000000000").status_code == 404
    return ids


def test_every_dashboard_query_returns_data(observed: Observed, photos: dict[str, bytes]) -> None:
    started = time.monotonic()
    _push_traffic(observed.stack, photos)

    # Prometheus scrapes every service (all replicas), with the job names Compose uses.
    def all_up() -> bool:
        up = observed.query('up{job!="prometheus"} == 1')
        return {r["metric"]["job"] for r in up} == set(APP_SERVICES) and len(up) == 5

    wait_for(all_up, 60, 0.5, "every service to be scraped")

    queries = dashboard_queries()
    assert len(queries) >= 12
    missing: dict[str, str] = {}

    def everything_has_data() -> bool:
        missing.clear()
        for title, expr in queries:
            promql = expr
            for variable, value in GRAFANA_VARIABLES.items():
                promql = promql.replace(variable, value)
            if not observed.query(promql):
                missing[title] = promql
        return not missing

    try:
        wait_for(everything_has_data, 90, 1.0, "every dashboard query to return data")
    except AssertionError as exc:
        raise AssertionError(f"queries without data: {missing}") from exc

    # Data from the right places: both APIs, both worker kinds, the cache, one model version.
    api_jobs = {r["metric"]["job"] for r in observed.query("penguin12_http_requests_total")}
    assert api_jobs == {"preprocessor", "provenance"}
    jobs = {r["metric"]["job"] for r in observed.query("penguin12_messages_total")}
    assert {"feature_extractor", "classifier", "provenance"} <= jobs
    finished = observed.query('sum(penguin12_jobs_finished_total{status="COMPLETED"})')
    assert float(finished[0]["value"][1]) >= 5
    hits = observed.query('sum(penguin12_embedding_cache_total{result="hit"})')
    assert float(hits[0]["value"][1]) >= 1
    info = observed.query("penguin12_model_info")
    assert {r["metric"]["job"] for r in info} == {"feature_extractor", "classifier"}
    assert len({r["metric"]["version"] for r in info}) == 1
    print(f"dashboard data complete {time.monotonic() - started:.1f}s after the first job")


def test_one_job_is_one_trace_across_all_four_services(
    observed: Observed, photos: dict[str, bytes]
) -> None:
    stack = observed.stack
    response = stack.submit(photos["chelsea.jpg"], "chelsea.jpg")
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    assert stack.wait_final(request_id)["status"] == "COMPLETED"

    found: dict[str, Any] = {}

    def complete_trace() -> bool:
        spans = observed.receiver.spans(list(EXPECTED_SPANS))
        uploads = [
            s
            for s in spans
            if s.name == "upload" and s.attributes.get("penguin12.request_id") == request_id
        ]
        if not uploads:
            return False
        trace_id = uploads[0].trace_id
        in_trace: dict[str, set[str]] = {}
        for span in spans:
            if span.trace_id == trace_id:
                in_trace.setdefault(span.service, set()).add(span.name)
        found.update(trace_id=trace_id, spans=in_trace)
        return all(names <= in_trace.get(svc, set()) for svc, names in EXPECTED_SPANS.items())

    try:
        wait_for(complete_trace, 60, 0.5, "the job's spans from all four services")
    except AssertionError as exc:
        raise AssertionError(f"trace incomplete: {found}, expected {EXPECTED_SPANS}") from exc

    # Every status update of the job was recorded inside that one trace.
    spans = observed.receiver.spans(["provenance"])
    statuses = {
        s.attributes.get("penguin12.status")
        for s in spans
        if s.trace_id == found["trace_id"] and s.name == "record_status"
    }
    assert {"PENDING", "PROCESSING_FEATURES", "CLASSIFYING", "COMPLETED"} <= statuses, statuses
    if observed.receiver.kind == "jaeger":
        # The query API a person's Jaeger UI uses finds the trace by its id as well.
        url = f"{observed.receiver.ui_url}/api/traces/{urllib.parse.quote(found['trace_id'])}"
        trace = httpx.get(url, timeout=10).json()["data"][0]
        services = {p["serviceName"] for p in trace["processes"].values()}
        assert set(EXPECTED_SPANS) <= services
    elif PREFERRED_RECEIVER == "jaeger":
        # start_trace_receiver fell back to the Collector (Jaeger could not be built): the spans
        # were checked, the Jaeger query API was not. Say so (and fail under CI).
        missing_test_dependency(
            "Jaeger was unavailable (the OTel Collector received the traces): its query API "
            "was not checked; see traces.log / `make setup-test`"
        )


def test_api_requests_are_labelled_by_route_template(
    observed: Observed, photos: dict[str, bytes]
) -> None:
    stack = observed.stack
    request_id = stack.submit(photos["coffee.jpg"], "coffee.jpg").json()["request_id"]
    stack.wait_final(request_id)
    wanted = {("preprocessor", "/v1/infer"), ("provenance", "/v1/status/{request_id}")}
    routes: set[tuple[str, str]] = set()

    def labelled() -> bool:
        routes.clear()
        for r in observed.query("penguin12_http_requests_total"):
            routes.add((r["metric"]["job"], r["metric"]["route"]))
        return wanted <= routes

    try:
        wait_for(labelled, 8, 0.5, "route-labelled request counters")
    except AssertionError as exc:
        raise AssertionError(f"routes seen: {sorted(routes)}") from exc
