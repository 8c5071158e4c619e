"""``make run``'s observability: a detached Prometheus and trace receiver, unless running.

Each part is optional: one that cannot be had (no apt-get, no Go) is skipped with a warning
and the services run without it. Data, config and pid files live under ``.run/data``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from penguin12_devstack.observability import prometheus, trace_receiver
from penguin12_devstack.observability.trace_receiver import (
    ObservabilityPorts,
    start_trace_receiver,
)
from penguin12_devstack.process import pid_file_running, stop_pid_file

__all__ = [
    "LocalObservability",
    "local_observability_status",
    "start_local_observability",
    "stop_local_observability",
]

log = logging.getLogger("penguin12.devstack.observability")

# The folders under .run/data, by the name `make status` and `make stop` print.
_PID_FILES = {"prometheus": prometheus.PID_FILE, "traces": trace_receiver.PID_FILE}


@dataclass
class LocalObservability:
    env: dict[str, str]
    urls: dict[str, str]
    started: list[str]


def start_local_observability(
    *,
    run_dir: Path,
    cache_dir: Path,
    logs_dir: Path,
    targets: Mapping[str, Sequence[str]],
    ports: ObservabilityPorts | None = None,
) -> LocalObservability:
    """For ``make run``: detached Prometheus and trace receiver, unless already running.

    Returns the environment the services need (``PENGUIN12_OTLP_ENDPOINT``) and the URLs to
    print. A part that cannot be had (no apt-get, no Go) is skipped with a warning.
    """
    ports = ports or ObservabilityPorts()
    env: dict[str, str] = {}
    urls: dict[str, str] = {}
    started: list[str] = []
    base = run_dir / "data"

    traces_dir = base / "traces"
    if pid_file_running(traces_dir / trace_receiver.PID_FILE):
        env["PENGUIN12_OTLP_ENDPOINT"] = f"http://127.0.0.1:{ports.otlp_http}"
        urls["Traces"] = f"http://127.0.0.1:{ports.jaeger_ui}"
    else:
        try:
            receiver = start_trace_receiver(
                cache_dir=cache_dir / "observability",
                data_dir=traces_dir,
                log_file=logs_dir / "traces.log",
                ports=ports,
                detach=True,
            )
            receiver.wait_ready(60)
            env["PENGUIN12_OTLP_ENDPOINT"] = receiver.otlp_endpoint
            urls["Traces"] = receiver.ui_url or f"{receiver.spans_file} (JSON lines)"
            started.append(receiver.kind)
        except (RuntimeError, OSError, TimeoutError) as exc:
            log.warning("tracing stays off: %s", exc)

    prom_dir = base / "prometheus"
    if not pid_file_running(prom_dir / prometheus.PID_FILE):
        try:
            config = prometheus.local_prometheus_config(
                {**targets, "prometheus": [f"127.0.0.1:{ports.prometheus}"]}
            )
            server = prometheus.start_prometheus(
                config_file=prometheus.write_prometheus_config(prom_dir / "prometheus.yml", config),
                data_dir=prom_dir,
                log_file=logs_dir / "prometheus.log",
                port=ports.prometheus,
                detach=True,
            )
            server.wait_ready(60)
            started.append("prometheus")
        except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
            log.warning("Prometheus not started: %s", exc)
            return LocalObservability(env, urls, started)
    urls["Prometheus"] = f"http://127.0.0.1:{ports.prometheus}"
    return LocalObservability(env, urls, started)


def stop_local_observability(run_dir: Path) -> list[str]:
    """Stop what :func:`start_local_observability` started; returns the names stopped."""
    return [
        name
        for name, pid_file in _PID_FILES.items()
        if stop_pid_file(run_dir / "data" / name / pid_file, timeout=20)
    ]


def local_observability_status(run_dir: Path) -> list[tuple[str, bool]]:
    """Whether each part of :func:`start_local_observability` runs, for ``make status``."""
    return [
        (name, pid_file_running(run_dir / "data" / name / pid_file))
        for name, pid_file in _PID_FILES.items()
    ]
