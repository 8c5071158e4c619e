"""The consume -> process -> produce -> store-offset loop every Kafka worker runs.

Rules it keeps (the ones that make "nothing is lost" true):
- an offset is stored only after every record produced for it is acknowledged by the broker
  (those the handler sent early through `EarlyOutputs` included);
- a record that can never be processed (poison) goes to the dead-letter topic with the reason,
  and its job is marked FAILED when its request id can be read; the loop carries on;
- a transient failure (broker or Redis unreachable) rewinds to the last stored offset and retries
  with backoff, so the batch is processed again rather than skipped;
- SIGTERM finishes the batch in hand, commits, and exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from opentelemetry import context as otel_context

from penguin12 import deadletter, schemas, tracing
from penguin12.kafka import (
    MAX_RECORD_BYTES,
    AsyncProducer,
    DeliveryError,
    new_consumer,
    producer_config,
)
from penguin12.logs import request_context
from penguin12.metrics import BATCH_SIZE, DELIVERY_LATENCY, MESSAGES, PROCESSING_LATENCY
from penguin12.settings import CommonSettings

log = logging.getLogger("penguin12.worker")

M = TypeVar("M", bound=schemas._Message)


class RetryableError(RuntimeError):
    """Raised by a handler when a dependency is down: the batch is retried, not dead-lettered."""


class ConsumerOutsideGroup(RetryableError):
    """The consumer has neither a group membership nor partitions for too long: replace it.

    Seen in `make chaos` (restart-kafka): after the broker came back, the classifier's consumer
    (librdkafka 2.16) kept polling with member id "" and never rejoined, while the other workers
    did; its group stayed empty and every job stopped at CLASSIFYING. A surplus replica that
    joined but owns no partitions has a member id, so it is left alone.
    """


@dataclass(frozen=True)
class Record(Generic[M]):
    """One consumed record, decoded, with the trace context its producer sent."""

    message: Message
    payload: M
    trace_context: otel_context.Context


@dataclass(frozen=True)
class Output:
    topic: str
    value: bytes
    key: str | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def status_output(
    settings: CommonSettings, update: schemas.StatusUpdate, ctx: otel_context.Context | None = None
) -> Output:
    """A status update, keyed by request id so one job's updates share a partition."""
    return Output(
        settings.topic_status,
        schemas.encode(update),
        update.request_id,
        tracing.inject_headers(ctx),
    )


def deliver(producer: AsyncProducer, outputs: list[Output], timeout_s: float) -> None:
    """Produce ``outputs`` and wait for every acknowledgement; raise `DeliveryError` if any
    failed or is still unreported after ``timeout_s`` (then nothing may be committed)."""
    if not outputs:
        return
    errors: list[KafkaError] = []
    pending = len(outputs)
    lock, all_reported = threading.Lock(), threading.Event()

    def on_delivery(err: KafkaError | None) -> None:
        nonlocal pending
        with lock:
            if err is not None:
                errors.append(err)
            pending -= 1
            if pending == 0:
                all_reported.set()

    for out in outputs:
        producer.produce(
            out.topic, out.value, key=out.key, headers=out.headers, on_delivery=on_delivery
        )
    # Wait for these reports, served by the producer's own thread: not `flush()`, whose
    # polling races that thread and then sleeps up to 10 ms per batch (measured: 6 ms of an
    # idle job's 18 ms in the feature extractor).
    reported = all_reported.wait(timeout_s)
    if not reported or errors:
        raise DeliveryError(f"{pending} undelivered, errors: {errors[:3]}")


class EarlyOutputs:
    """Records a handler sends *before* its batch is done (the "work started" status), so
    clients see them at once, yet awaited like the batch's outputs: the worker stores the
    batch's offsets only once these are acknowledged too, and rewinds if one failed."""

    def __init__(self, producer: AsyncProducer):
        self._producer = producer
        self._cond = threading.Condition()
        self._pending = 0
        self._errors: list[KafkaError] = []

    def emit(self, out: Output) -> None:
        with self._cond:
            self._pending += 1
        self._producer.produce(
            out.topic, out.value, key=out.key, headers=out.headers, on_delivery=self._reported
        )

    def _reported(self, err: KafkaError | None) -> None:
        with self._cond:
            if err is not None:
                self._errors.append(err)
            self._pending -= 1
            self._cond.notify_all()

    def settle(self, timeout_s: float) -> None:
        """Wait for every record emitted so far; raise `DeliveryError` if one failed."""
        with self._cond:
            reported = self._cond.wait_for(lambda: self._pending <= 0, timeout_s)
            errors, self._errors = self._errors, []
            if not reported or errors:
                raise DeliveryError(f"{self._pending} early records undelivered: {errors[:3]}")


class _MembershipWatch:
    """Raises `ConsumerOutsideGroup` once a consumer has been out of its group too long."""

    CHECK_EVERY_S = 2.0

    def __init__(self, timeout_s: float):
        self._timeout_s = timeout_s
        self._outside_since: float | None = None
        self._checked_at = 0.0

    def check(self, consumer: Consumer, group_id: str) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.CHECK_EVERY_S:
            return
        self._checked_at = now
        if consumer.memberid() or consumer.assignment():
            self._outside_since = None
        elif self._outside_since is None:
            self._outside_since = now
        elif now - self._outside_since > self._timeout_s:
            raise ConsumerOutsideGroup(
                f"not a member of consumer group {group_id!r} for "
                f"{now - self._outside_since:.0f} s; replacing the consumer"
            )


@dataclass
class StreamWorker(Generic[M]):
    settings: CommonSettings
    group_id: str
    source_topic: str
    schema: type[M]
    handle_batch: Callable[[list[Record[M]]], list[Output]]
    max_batch_size: int = 1
    max_batch_wait_s: float = 0.0
    poll_timeout_s: float = 0.5
    retry_backoff_s: float = 1.0
    # Longer than the producer's message.timeout.ms (30 s), which reports a failure by itself.
    delivery_timeout_s: float = 40.0
    producer: AsyncProducer | None = None
    # What the handler sends before its batch is done (awaited before offsets are stored).
    early: EarlyOutputs | None = None
    ready: bool = False

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; recover from transient failures by rewinding."""
        own_producer = self.producer is None
        producer = self.producer or AsyncProducer(producer_config(self.settings))
        backoff = self.retry_backoff_s
        try:
            while not stop.is_set():
                consumer = new_consumer(self.settings, self.group_id, [self.source_topic])
                try:
                    self._consume(consumer, producer, stop)
                    backoff = self.retry_backoff_s
                except (DeliveryError, RetryableError, KafkaException) as exc:
                    self.ready = False
                    log.warning("transient failure, rewinding to last stored offset: %s", exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                finally:
                    consumer.close()  # commits the offsets stored so far
        finally:
            if own_producer:
                producer.close()
            self.ready = False

    def _consume(self, consumer: Consumer, producer: AsyncProducer, stop: threading.Event) -> None:
        membership = _MembershipWatch(self.settings.rejoin_timeout_s)
        while not stop.is_set():
            batch = self._poll_batch(consumer)
            self.ready = True
            membership.check(consumer, self.group_id)
            if not batch:
                continue
            started = time.perf_counter()
            outputs = self._process(batch)
            handed_over = time.perf_counter()
            self._deliver(producer, outputs)
            if self.early is not None:
                self.early.settle(self.delivery_timeout_s)
            for message in batch:
                consumer.store_offsets(message=message)
            BATCH_SIZE.observe(len(batch))
            PROCESSING_LATENCY.observe(handed_over - started)
            DELIVERY_LATENCY.observe(time.perf_counter() - handed_over)

    def _poll_batch(self, consumer: Consumer) -> list[Message]:
        """Block for one record, then take whatever else is already fetched (up to the batch size).

        At idle a job is processed alone without waiting; under load batches fill by themselves.
        """
        first = consumer.poll(self.poll_timeout_s)
        if first is None:
            return []
        messages = [first]
        if self.max_batch_size > 1:
            messages += consumer.consume(self.max_batch_size - 1, timeout=self.max_batch_wait_s)
        good = []
        for message in messages:
            err = message.error()
            if err is None:
                good.append(message)
            elif err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error: %s", err)
        return good

    def _process(self, batch: list[Message]) -> list[Output]:
        outputs: list[Output] = []
        records: list[Record[M]] = []
        for message in batch:
            size = len(message.value() or b"")
            if size > MAX_RECORD_BYTES:
                # Too big to parse safely; its key is the job's request id (every producer keys by it).
                key = (message.key() or b"").decode("utf-8", "replace")
                reason = f"record of {size:,} bytes is over the {MAX_RECORD_BYTES:,}-byte limit"
                outputs += self._dead_letter(
                    message, reason, key if 0 < len(key) <= 64 else None, None
                )
                continue
            try:
                payload = schemas.decode(self.schema, message.value())
            except schemas.PoisonMessage as poison:
                outputs += self._dead_letter(
                    message, poison.reason, poison.request_id, poison.submitted_at
                )
                continue
            records.append(Record(message, payload, tracing.extract_context(message.headers())))
        if not records:
            return outputs
        try:
            outputs += self.handle_batch(records)
            MESSAGES.labels(outcome="ok").inc(len(records))
        except RetryableError:
            raise
        except Exception:
            log.exception("batch of %d failed; retrying its records one by one", len(records))
            for record in records:
                outputs += self._process_one(record)
        return outputs

    def _process_one(self, record: Record[M]) -> list[Output]:
        with request_context(record.payload.request_id):
            try:
                result = self.handle_batch([record])
                MESSAGES.labels(outcome="ok").inc()
                return result
            except RetryableError:
                raise
            except Exception as exc:
                log.exception("processing failed")
                reason = f"{type(exc).__name__}: {exc}"
                return self._dead_letter(
                    record.message, reason, record.payload.request_id, record.payload.submitted_at
                )

    def _dead_letter(
        self, message: Message, reason: str, request_id: str | None, submitted_at: float | None
    ) -> list[Output]:
        """Dead-letter a record with its reason, and fail its job where we know which job."""
        with request_context(request_id or "-"):
            log.error(
                "dead-lettering record %s[%d]@%d: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                reason,
            )
        MESSAGES.labels(outcome="dead_lettered").inc()
        # Keep the job's trace: the dead letter and the FAILED status continue it.
        trace_context = tracing.extract_context(message.headers())
        value, headers = deadletter.encode(message, reason, self.settings.service_name)
        headers = [*tracing.inject_headers(trace_context), *headers]
        outputs = [Output(self.settings.topic_dead_letter, value, request_id, headers)]
        if request_id is not None:
            failed = schemas.StatusUpdate(
                request_id=request_id,
                submitted_at=submitted_at if submitted_at is not None else time.time(),
                status=schemas.JobStatus.FAILED,
                service=self.settings.service_name,
                error=f"{self.settings.service_name} could not process the job: {reason}",
            )
            outputs.append(status_output(self.settings, failed, trace_context))
        return outputs

    def _deliver(self, producer: AsyncProducer, outputs: list[Output]) -> None:
        """Produce and wait for every acknowledgement; any failure means: do not commit."""
        deliver(producer, outputs, self.delivery_timeout_s)
