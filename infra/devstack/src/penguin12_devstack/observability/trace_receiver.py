"""A real OTLP/HTTP trace receiver, and reading back what it received.

Jaeger (built by :mod:`.go_builds`) is the receiver ``docker-compose.yml`` runs; traces are
read back from its query API (``/api/traces``). When Jaeger cannot be built, the OTel
Collector stands in and traces are read back from the JSON-lines file it exports to. Both
expose OTLP/HTTP, which is what the services export to (``PENGUIN12_OTLP_ENDPOINT``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from penguin12_devstack.observability.go_builds import ensure_collector, ensure_jaeger
from penguin12_devstack.process import HttpProcess

__all__ = ["PID_FILE", "ObservabilityPorts", "Span", "TraceReceiver", "start_trace_receiver"]

log = logging.getLogger("penguin12.devstack.observability")

PID_FILE = "process.pid"


@dataclass(frozen=True)
class Span:
    trace_id: str
    service: str
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class TraceReceiver:
    """A running OTLP/HTTP receiver and the way to read back what it received."""

    kind: str  # "jaeger" or "otelcol"
    otlp_endpoint: str  # what services get as PENGUIN12_OTLP_ENDPOINT
    ui_url: str | None
    process: HttpProcess
    spans_file: Path | None = None

    def stop(self) -> None:
        self.process.stop()

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.process.wait_ready(timeout)

    def spans(self, services: Sequence[str]) -> list[Span]:
        """Every span received so far from ``services``."""
        if self.kind == "jaeger":
            return self._jaeger_spans(services)
        return self._file_spans(services)

    def _jaeger_spans(self, services: Sequence[str]) -> list[Span]:
        out: list[Span] = []
        for service in services:
            query = urllib.parse.urlencode({"service": service, "limit": 1000, "lookback": "1h"})
            try:
                body = _get_json(f"{self.ui_url}/api/traces?{query}")
            except urllib.error.HTTPError:
                continue  # Jaeger answers 4xx/5xx for a service it has not seen yet
            for trace in body.get("data") or []:
                processes = trace.get("processes", {})
                for span in trace.get("spans", []):
                    proc = processes.get(span.get("processID"), {})
                    if proc.get("serviceName") != service:
                        continue
                    attrs = {t["key"]: t.get("value") for t in span.get("tags", [])}
                    out.append(Span(span["traceID"], service, span["operationName"], attrs))
        return out

    def _file_spans(self, services: Sequence[str]) -> list[Span]:
        if self.spans_file is None or not self.spans_file.is_file():
            return []
        wanted = set(services)
        out: list[Span] = []
        for line in self.spans_file.read_text().splitlines():
            try:
                batch = json.loads(line)
            except ValueError:
                continue  # blank, or the line the exporter is writing right now
            for rs in batch.get("resourceSpans", []):
                rattrs = _otlp_attributes(rs.get("resource", {}).get("attributes", []))
                service = str(rattrs.get("service.name", ""))
                if service not in wanted:
                    continue
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        attrs = _otlp_attributes(span.get("attributes", []))
                        out.append(Span(span["traceId"], service, span["name"], attrs))
        return out


def _otlp_attributes(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for item in items:
        value = item.get("value", {})
        attrs[item["key"]] = next(iter(value.values()), None) if value else None
    return attrs


@dataclass(frozen=True)
class ObservabilityPorts:
    """Local ports; the defaults are the host ports docker-compose.yml publishes."""

    prometheus: int = int(os.environ.get("PENGUIN12_LOCAL_PROMETHEUS_PORT", "9090"))
    otlp_http: int = int(os.environ.get("PENGUIN12_LOCAL_OTLP_PORT", "4318"))
    jaeger_ui: int = int(os.environ.get("PENGUIN12_LOCAL_JAEGER_UI_PORT", "16686"))
    jaeger_grpc: int = int(os.environ.get("PENGUIN12_LOCAL_JAEGER_GRPC_PORT", "16685"))
    health: int = int(os.environ.get("PENGUIN12_LOCAL_TRACES_HEALTH_PORT", "13133"))


def _jaeger_config(ports: ObservabilityPorts) -> dict[str, Any]:
    """All-in-one with memory storage, listening only on the given loopback ports."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
        "extensions": {
            "healthcheckv2": {
                "use_v2": True,
                "http": {"endpoint": f"127.0.0.1:{ports.health}"},
            },
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                # Jaeger would trace its own queries to 127.0.0.1:4317; nothing listens there.
                "enable_tracing": False,
                "http": {"endpoint": f"127.0.0.1:{ports.jaeger_ui}"},
                "grpc": {"endpoint": f"127.0.0.1:{ports.jaeger_grpc}"},
            },
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
        },
        "receivers": {
            "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ports.otlp_http}"}}}
        },
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def _collector_config(ports: ObservabilityPorts, spans_file: Path) -> dict[str, Any]:
    return {
        "receivers": {
            "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ports.otlp_http}"}}}
        },
        "exporters": {"file": {"path": str(spans_file), "format": "json"}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
    }


def start_trace_receiver(
    *,
    cache_dir: Path,
    data_dir: Path,
    log_file: Path,
    ports: ObservabilityPorts,
    detach: bool = False,
    prefer: str = "jaeger",
) -> TraceReceiver:
    """Start Jaeger (or, failing that, the OTel Collector) receiving OTLP/HTTP on ``ports``."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    otlp = f"http://127.0.0.1:{ports.otlp_http}"
    errors = []
    for kind in (prefer, *(k for k in ("jaeger", "otelcol") if k != prefer)):
        try:
            if kind == "jaeger":
                proc = _start_receiver(
                    "jaeger",
                    ensure_jaeger(cache_dir),
                    _jaeger_config(ports),
                    data_dir=data_dir,
                    log_file=log_file,
                    detach=detach,
                    health_url=f"http://127.0.0.1:{ports.jaeger_ui}/api/services",
                )
                return TraceReceiver("jaeger", otlp, f"http://127.0.0.1:{ports.jaeger_ui}", proc)
            spans_file = data_dir / "spans.jsonl"
            proc = _start_receiver(
                "otelcol",
                ensure_collector(cache_dir),
                _collector_config(ports, spans_file),
                data_dir=data_dir,
                log_file=log_file,
                detach=detach,
                health_url=f"{otlp}/v1/traces",
                any_status=True,  # the OTLP endpoint answers a GET with 405: it is up
            )
            return TraceReceiver("otelcol", otlp, None, proc, spans_file)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log.warning("trace receiver %s unavailable: %s", kind, exc)
            errors.append(f"{kind}: {exc}")
    raise RuntimeError("no OTLP trace receiver could be started:\n" + "\n".join(errors))


def _start_receiver(
    kind: str,
    binary: Path,
    config: Mapping[str, Any],
    *,
    data_dir: Path,
    log_file: Path,
    detach: bool,
    health_url: str,
    any_status: bool = False,
) -> HttpProcess:
    """Write ``config`` beside the pid file in ``data_dir`` and start ``binary`` on it."""
    config_file = data_dir / f"{kind}.json"
    config_file.write_text(json.dumps(config, indent=2))
    return HttpProcess.start(
        kind,
        [str(binary), f"--config={config_file}"],
        run_dir=data_dir,
        pid_name=PID_FILE,
        log_file=log_file,
        detach=detach,
        health_url=health_url,
        any_status=any_status,
    )


def _get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())
