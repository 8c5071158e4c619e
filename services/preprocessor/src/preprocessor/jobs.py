"""Publishing an accepted upload as a job: the image to the pipeline, PENDING to the status log."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import redis
from confluent_kafka import KafkaError
from opentelemetry import trace
from starlette.concurrency import run_in_threadpool

from penguin12 import schemas, tracing
from penguin12.imaging import PreparedImage
from penguin12.kafka import AsyncProducer, KafkaHealth
from penguin12.state import JobStore
from preprocessor.settings import PreprocessorSettings

log = logging.getLogger("penguin12.preprocessor.jobs")
tracer = trace.get_tracer("penguin12.preprocessor")


class PublishFailed(RuntimeError):
    """Kafka did not acknowledge the job in time; the client should retry later."""


class JobPublisher:
    def __init__(
        self,
        settings: PreprocessorSettings,
        producer: AsyncProducer,
        store: JobStore,
        health: KafkaHealth,
    ):
        self._settings = settings
        self._producer = producer
        self._health = health
        self._store = store

    async def publish(
        self,
        request_id: str,
        image: PreparedImage,
        *,
        evidence: list[schemas.Finding] | None = None,
        callback_url: str | None = None,
    ) -> None:
        """Return once Kafka holds both records (acks=all), so the 202 is a promise we can keep."""
        submitted_at = time.time()
        job = schemas.ImageJob(
            request_id=request_id,
            submitted_at=submitted_at,
            pixels=image.pixels.tobytes(),
            height=image.pixels.shape[0],
            width=image.pixels.shape[1],
            content_sha256=image.sha256,
            source_format=image.source_format,
            preprocessing=image.preprocessing.key,
            evidence=evidence or None,  # off the wire when there is none (older consumers)
        )
        pending = schemas.StatusUpdate(
            request_id=request_id,
            submitted_at=submitted_at,
            status=schemas.JobStatus.PENDING,
            at=submitted_at,
            service=self._settings.service_name,
            callback_url=callback_url,
        )
        if self._producer.brokers_down and not self._health.up:
            raise PublishFailed("Kafka is unreachable")
        with tracer.start_as_current_span(
            "publish", attributes={"penguin12.request_id": request_id}
        ):
            headers = tracing.inject_headers()
            acks = [
                self._send(
                    self._settings.topic_preprocessed, request_id, schemas.encode(job), headers
                ),
                self._send(
                    self._settings.topic_status, request_id, schemas.encode(pending), headers
                ),
            ]
            log.debug("job handed to Kafka; awaiting its acknowledgement")
            try:
                # librdkafka's own message timeout (delivery_timeout_s) decides; the extra second
                # makes sure we never answer 503 for a record that was in fact delivered.
                await asyncio.wait_for(asyncio.gather(*acks), self._settings.delivery_timeout_s + 1)
            except (TimeoutError, KafkaDeliveryError) as exc:
                raise PublishFailed(str(exc) or "timed out waiting for Kafka") from exc
        # Record PENDING at once so the status_url never answers 404, even before provenance has
        # consumed the status record (the same monotonic write it will repeat).
        try:
            await run_in_threadpool(self._store.apply, pending)
        except Exception:
            log.warning("could not pre-register job state; provenance will", exc_info=True)

    def _send(
        self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None) -> None:
            loop.call_soon_threadsafe(_settle, future, err)

        self._producer.produce(topic, value, key=key, headers=headers, on_delivery=on_delivery)
        return future


class KafkaDeliveryError(RuntimeError):
    pass


def _settle(future: asyncio.Future[None], err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaDeliveryError(err.str()))


class IdempotencyRegistry:
    """Maps a client's Idempotency-Key to the request id of its first submission."""

    def __init__(self, client: redis.Redis, ttl_s: int):
        self._redis = client
        self._ttl_s = ttl_s

    @staticmethod
    def _key(client_identity: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(f"{client_identity}\0{idempotency_key}".encode()).hexdigest()
        return f"penguin12:idem:{digest}"

    def lookup(self, client_identity: str, idempotency_key: str) -> str | None:
        value = self._redis.get(self._key(client_identity, idempotency_key))
        return value.decode() if isinstance(value, bytes) else None

    def claim(self, client_identity: str, idempotency_key: str, request_id: str) -> str:
        """Claim the key for ``request_id``; returns the request id that owns it (ours or earlier)."""
        key = self._key(client_identity, idempotency_key)
        if self._redis.set(key, request_id, nx=True, ex=self._ttl_s):
            return request_id
        return self.lookup(client_identity, idempotency_key) or request_id

    def release(self, client_identity: str, idempotency_key: str) -> None:
        self._redis.delete(self._key(client_identity, idempotency_key))
