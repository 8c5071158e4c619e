"""Trace context through Kafka headers (pure logic, no services): with tracing off a service
records nothing yet passes the context on, so the services that export still join one trace."""

from __future__ import annotations

from opentelemetry import trace

from penguin12.tracing import extract_context, inject_headers, setup_tracing

INCOMING = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_without_an_endpoint_nothing_is_recorded_and_the_context_passes_through() -> None:
    setup_tracing("test", "")
    context = extract_context([("traceparent", INCOMING)])
    span = trace.get_tracer("test").start_span("step", context=context)
    assert not span.is_recording()
    outgoing = dict(inject_headers(trace.set_span_in_context(span)))
    assert outgoing["traceparent"] == INCOMING


def test_without_a_context_no_header_is_invented() -> None:
    setup_tracing("test", "")
    span = trace.get_tracer("test").start_span("step")
    assert dict(inject_headers(trace.set_span_in_context(span))) == {}
