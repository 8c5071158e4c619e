"""Publishing an accepted upload as a job: the image to the pipeline, PENDING to the status log."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

import redis
from confluent_kafka import KafkaError
from opentelemetry import trace

from penguin12 import schemas, tracing
from penguin12.imaging import PreparedImage
from penguin12.kafka import AsyncProducer, KafkaHealth
from penguin12.state import JobStore
from preprocessor.settings import PreprocessorSettings

log = logging.getLogger("penguin12.preprocessor.jobs")
tracer = trace.get_tracer("penguin12.preprocessor")


@dataclass(frozen=True)
class DeferredUpload:
    """An upload whose header passed every check, queued as it came for the feature extractor to
    decode (settings.defer_decode): the front door never decodes its pixels."""

    data: bytes
    source_format: str


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
        image: PreparedImage | DeferredUpload,
        *,
        evidence: list[schemas.Finding] | None = None,
        callback_url: str | None = None,
        owner: str | None = None,
    ) -> None:
        """Return once Kafka holds both records (acks=all), so the 202 is a promise we can keep."""
        submitted_at = time.time()
        found = evidence or None  # off the wire when there is none (older consumers)
        if isinstance(image, DeferredUpload):  # the feature extractor decodes it
            job = schemas.ImageJob(
                request_id=request_id,
                submitted_at=submitted_at,
                upload=image.data,
                content_sha256=hashlib.sha256(image.data).hexdigest(),
                source_format=image.source_format,
                evidence=found,
            )
        else:
            job = schemas.ImageJob(
                request_id=request_id,
                submitted_at=submitted_at,
                pixels=image.pixels.tobytes(),
                height=image.pixels.shape[0],
                width=image.pixels.shape[1],
                content_sha256=image.sha256,
                source_format=image.source_format,
                preprocessing=image.preprocessing.key,
                evidence=found,
            )
        pending = schemas.StatusUpdate(
            request_id=request_id,
            submitted_at=submitted_at,
            status=schemas.JobStatus.PENDING,
            at=submitted_at,
            service=self._settings.service_name,
            callback_url=callback_url,
            owner=owner,
        )
        if self._producer.brokers_down and not self._health.up:
            raise PublishFailed("Kafka is unreachable")
        with tracer.start_as_current_span(
            "publish", attributes={"penguin12.request_id": request_id}
        ):
            headers = tracing.inject_headers()
            acks = [
                self._send(
                    self._settings.topic_preprocessed,
                    request_id,
                    schemas.encode(job, framed=self._settings.image_record_format == "binary"),
                    headers,
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
            await self._store.apply_async(pending)
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


class IdempotencyInProgress(RuntimeError):
    """The first request with this Idempotency-Key has not been answered yet."""


# Confirm (ARGV[3] = ttl) or release (ARGV[3] = '') the key, but only while we still hold it.
_SETTLE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""
_PENDING = "pending:"


class IdempotencyRegistry:
    """Maps a client's Idempotency-Key to the request id of its first *queued* submission.

    A key is first claimed as ``pending:<request id>`` for at most ``pending_ttl_s``; only once the
    job is in Kafka is it confirmed to ``<request id>``. A retry meanwhile gets
    `IdempotencyInProgress` (409 + Retry-After), never a ticket for a job that may still fail; a
    refused or failed first request releases the key, and if even that fails, the claim simply
    expires. So a ticket handed out under a key always names a queued job.
    """

    def __init__(self, client: redis.Redis, ttl_s: int, pending_ttl_s: int = 120):
        self._redis = client
        self._ttl_s = ttl_s
        self._pending_ttl_s = pending_ttl_s
        self._settle = client.register_script(_SETTLE)

    @staticmethod
    def _key(client_identity: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(f"{client_identity}\0{idempotency_key}".encode()).hexdigest()
        return f"penguin12:idem:{digest}"

    def lookup(self, client_identity: str, idempotency_key: str) -> str | None:
        """The queued job's request id, None if the key is free; raises while it is in flight."""
        value = self._redis.get(self._key(client_identity, idempotency_key))
        if not isinstance(value, bytes):
            return None
        text = value.decode()
        if text.startswith(_PENDING):
            raise IdempotencyInProgress(text.removeprefix(_PENDING))
        return text

    def claim(self, client_identity: str, idempotency_key: str, request_id: str) -> str:
        """Claim the key for ``request_id``; returns the request id of the queued job that owns
        it (ours if the claim succeeded); raises `IdempotencyInProgress` while another holds it."""
        key = self._key(client_identity, idempotency_key)
        if self._redis.set(key, _PENDING + request_id, nx=True, ex=self._pending_ttl_s):
            return request_id
        return self.lookup(client_identity, idempotency_key) or self.claim(
            client_identity, idempotency_key, request_id
        )

    def confirm(self, client_identity: str, idempotency_key: str, request_id: str) -> bool:
        """The job is queued: the key now names it for ``ttl_s``."""
        key = self._key(client_identity, idempotency_key)
        return bool(self._settle(keys=[key], args=[_PENDING + request_id, request_id, self._ttl_s]))

    def release(self, client_identity: str, idempotency_key: str, request_id: str) -> None:
        """Nothing was queued: free the key (if this request still holds it)."""
        key = self._key(client_identity, idempotency_key)
        self._settle(keys=[key], args=[_PENDING + request_id, "", ""])
