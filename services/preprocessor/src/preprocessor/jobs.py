"""Publishing an accepted upload as a job: the image to the pipeline, PENDING to the status log."""

from __future__ import annotations

import asyncio
import logging
import time

from confluent_kafka import KafkaError
from opentelemetry import trace
from penguin12 import schemas, tracing
from penguin12.imaging import PreparedImage
from penguin12.kafka import AsyncProducer
from penguin12.state import JobStore
from starlette.concurrency import run_in_threadpool

from preprocessor.settings import PreprocessorSettings

log = logging.getLogger("penguin12.preprocessor.jobs")
tracer = trace.get_tracer("penguin12.preprocessor")


class PublishFailed(RuntimeError):
    """Kafka did not acknowledge the job in time; the client should retry later."""


class JobPublisher:
    def __init__(self, settings: PreprocessorSettings, producer: AsyncProducer, store: JobStore):
        self._settings = settings
        self._producer = producer
        self._store = store

    async def publish(self, request_id: str, image: PreparedImage) -> None:
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
        )
        pending = schemas.StatusUpdate(
            request_id=request_id,
            submitted_at=submitted_at,
            status=schemas.JobStatus.PENDING,
            at=submitted_at,
            service=self._settings.service_name,
        )
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
            try:
                await asyncio.wait_for(asyncio.gather(*acks), self._settings.delivery_timeout_s)
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
