"""Local observability: a real Prometheus and a real OTLP trace receiver, no Docker needed.

``make run`` (:mod:`.local`) and the tests use this package to run what
``docker-compose.yml`` runs in containers: Prometheus from Debian's package with the Compose
scrape config pointed at local ports (:mod:`.prometheus`), and Jaeger v2, or the OTel
Collector as a fallback, built from their Go modules (:mod:`.go_builds`) and run as an
OTLP/HTTP receiver whose spans can be read back (:mod:`.trace_receiver`).
"""

from penguin12_devstack.observability.go_builds import (
    COLLECTOR_BUILDER_VERSION,
    JAEGER_MODULE,
    JAEGER_MODULE_VERSION,
    JAEGER_RELEASE,
    ensure_collector,
    ensure_jaeger,
)
from penguin12_devstack.observability.local import (
    LocalObservability,
    local_observability_status,
    start_local_observability,
    stop_local_observability,
)
from penguin12_devstack.observability.prometheus import (
    ensure_prometheus,
    local_prometheus_config,
    start_prometheus,
    write_prometheus_config,
)
from penguin12_devstack.observability.trace_receiver import (
    ObservabilityPorts,
    Span,
    TraceReceiver,
    start_trace_receiver,
)

__all__ = [
    "COLLECTOR_BUILDER_VERSION",
    "JAEGER_MODULE",
    "JAEGER_MODULE_VERSION",
    "JAEGER_RELEASE",
    "LocalObservability",
    "ObservabilityPorts",
    "Span",
    "TraceReceiver",
    "ensure_collector",
    "ensure_jaeger",
    "ensure_prometheus",
    "local_observability_status",
    "local_prometheus_config",
    "start_local_observability",
    "start_prometheus",
    "start_trace_receiver",
    "stop_local_observability",
    "write_prometheus_config",
]
