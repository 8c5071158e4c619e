"""One function that sets up tracing, and the glue that carries trace context through Kafka.

W3C `traceparent` travels in Kafka record headers, so one trace follows a job across all four
services. With no OTLP endpoint configured nothing is recorded: the API's no-op tracer stays in
place (spans nobody exports cost ~10 per job, issue #14), and a context that arrives in headers is
passed on unchanged, so the services that do export still join one trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

log = logging.getLogger("penguin12.tracing")

KafkaHeaders = list[tuple[str, bytes]]


def setup_tracing(service: str, otlp_endpoint: str) -> None:
    """Record spans and export them over OTLP/HTTP when an endpoint is set; else record none."""
    if not otlp_endpoint:
        log.info("tracing off (no OTLP endpoint): trace context is passed on, nothing recorded")
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    endpoint = otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    log.info("exporting traces to %s", endpoint)
    trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def inject_headers(ctx: context.Context | None = None) -> KafkaHeaders:
    """The trace context (the current one by default) as Kafka headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return [(k, v.encode()) for k, v in carrier.items()]


def extract_context(
    headers: Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None,
) -> context.Context:
    """The trace context a producer put in a record's headers (an empty context if none)."""
    carrier: dict[str, str] = {}
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in items:
        if value is not None:
            carrier[key] = value.decode(errors="replace") if isinstance(value, bytes) else value
    return propagate.extract(carrier)
