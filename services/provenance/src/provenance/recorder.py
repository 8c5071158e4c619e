"""The status-topic consumer: the only writer of job state besides the preprocessor's PENDING."""

from __future__ import annotations

import logging

import redis
from opentelemetry import trace

from penguin12.logs import request_context
from penguin12.metrics import JOB_LATENCY, JOBS_FINISHED
from penguin12.schemas import TERMINAL_STATUSES, StatusUpdate
from penguin12.state import JobStore
from penguin12.worker import Output, Record, RetryableError

log = logging.getLogger("penguin12.provenance.recorder")
tracer = trace.get_tracer("penguin12.provenance")


class StatusRecorder:
    def __init__(self, store: JobStore):
        self._store = store

    def __call__(self, records: list[Record[StatusUpdate]]) -> list[Output]:
        try:  # one round trip for the whole batch
            applied = self._store.apply_many([record.payload for record in records])
        except redis.RedisError as exc:
            raise RetryableError(f"Redis unavailable: {exc}") from exc
        for record, changed in zip(records, applied, strict=True):
            update = record.payload
            with (
                request_context(update.request_id),
                tracer.start_as_current_span(
                    "record_status",
                    context=record.trace_context,
                    attributes={
                        "penguin12.request_id": update.request_id,
                        "penguin12.status": update.status,
                        "penguin12.applied": changed,
                    },
                ),
            ):
                if not changed:
                    log.debug("ignored %s (stale or repeated)", update.status)
                    continue
                if update.status not in TERMINAL_STATUSES:
                    # The service that sent it logged the step already; the final one is logged
                    # here too, where its latency is known.
                    log.debug("%s (from %s)", update.status, update.service)
                    continue
                latency = max(0.0, update.at - update.submitted_at)
                log.info(
                    "%s (from %s) %.3f s after submission", update.status, update.service, latency
                )
                JOBS_FINISHED.labels(status=update.status.value).inc()
                JOB_LATENCY.labels(status=update.status.value).observe(latency)
        return []
