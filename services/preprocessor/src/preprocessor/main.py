"""The preprocessor's FastAPI app: wiring, pre-start checks and health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from penguin12.evidence import TrustAnchors
from penguin12.kafka import AsyncProducer, KafkaHealth, producer_config
from penguin12.logs import setup_logging
from penguin12.web import (
    AccessGuard,
    connect_infrastructure,
    install_common,
    install_readiness,
    serve,
)
from preprocessor import batch
from preprocessor.admission import Admission, BacklogMonitor
from preprocessor.api import router
from preprocessor.decoding import DecodeGate
from preprocessor.intake import Intake
from preprocessor.jobs import IdempotencyRegistry, JobPublisher
from preprocessor.remote import UrlFetcher
from preprocessor.settings import PreprocessorSettings
from preprocessor.ui import install_ui
from preprocessor.upload_limits import (
    FORM_OVERHEAD_BYTES,
    PART_HEADER_BYTES,
    BodyLimit,
    UploadLimits,
)

log = logging.getLogger("penguin12.preprocessor")


def create_app(settings: PreprocessorSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A wrong path stops the start, clearly.
        trust = TrustAnchors.from_file(settings.c2pa_trust_anchors_file)
        client, aclient, store = await connect_infrastructure(settings)
        delivery_ms = int(settings.delivery_timeout_s * 1000)
        health = KafkaHealth(settings)
        health.start()
        producer = AsyncProducer(
            producer_config(settings, delivery_timeout_ms=delivery_ms), health.recheck
        )
        decoder = DecodeGate(
            workers=settings.decode_workers,
            budget_bytes=settings.decode_memory_budget_mb << 20,
            max_waiting=settings.decode_queue_max,
            wait_timeout_s=settings.decode_queue_timeout_s,
        )
        backlog = BacklogMonitor(settings, health)
        backlog.start()
        admission = Admission(
            backlog,
            IdempotencyRegistry(
                client, settings.idempotency_ttl_s, settings.idempotency_pending_ttl_s
            ),
        )
        app.state.kafka_health = health
        app.state.store = store
        app.state.guard = AccessGuard(settings, aclient, scope="submit")
        app.state.intake = Intake(
            settings,
            JobPublisher(settings, producer, store, health),
            decoder,
            admission,
            UrlFetcher(settings),
            trust,
        )
        log.info(
            "ready: accepting uploads; status URLs point at %s; preparing images as %s (from %s)",
            settings.public_status_base_url,
            settings.preprocessing,
            settings.preprocessing_origin,
        )
        try:
            yield
        finally:
            backlog.stop()
            decoder.close()
            await run_in_threadpool(producer.close)
            health.stop()
            await store.close_async()

    app = FastAPI(
        title="Penguin12 preprocessor",
        version="0.1.0",
        description="Submit images for deepfake analysis. Poll the returned status_url.",
        lifespan=lifespan,
    )
    # Added before install_common, so it runs inside CORS: browsers can read its 413s.
    app.add_middleware(UploadLimits, limits=upload_limits(settings))
    install_common(app, settings)
    app.include_router(router)
    app.include_router(batch.router)
    install_ui(app)
    install_readiness(
        app,
        "Readiness: Kafka and Redis reachable",
        kafka=(lambda state: bool(state.kafka_health.up), "unreachable"),
        redis=(lambda state: state.store.ping(), "unreachable"),
    )
    return app


def upload_limits(settings: PreprocessorSettings) -> dict[str, BodyLimit]:
    """The body limits of the two upload routes, from the upload size settings."""
    file_part = settings.max_upload_bytes + PART_HEADER_BYTES
    return {
        "/v1/infer": BodyLimit(
            max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
            max_parts=8,
            max_part_bytes=file_part,
            what="one image",
            advice="Send one `file` (or a `url`) and, optionally, a `callback_url`.",
        ),
        "/v1/infer/batch": BodyLimit(
            max_bytes=settings.max_batch_bytes,
            max_parts=batch.MAX_BATCH_FILES + 4,
            max_part_bytes=file_part,
            what="a batch request",
            advice=f"Send at most {batch.MAX_BATCH_FILES} files of at most "
            f"{settings.max_upload_bytes / 2**20:.0f} MiB each, or split the batch.",
        ),
    }


def return_freed_images_to_the_os(threshold: int = 1 << 20) -> bool:
    """Make glibc give every allocation over ``threshold`` its own mapping, unmapped when freed.

    By default glibc raises its mmap threshold after large frees (up to 32 MiB) and then serves
    image-sized buffers from per-thread arenas that keep freed memory: under a burst of
    decompression-bomb uploads the peak RSS was 971 MB with the default and 669 MB with this
    (bench/hostile_uploads.py, 32 uploads at once). Not glibc (musl, macOS): nothing to do.
    """
    import ctypes
    import ctypes.util

    m_mmap_threshold = -3
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(m_mmap_threshold, threshold))
    except (OSError, AttributeError):
        return False


def main() -> None:
    settings = PreprocessorSettings()
    setup_logging(settings.service_name, settings.log_level)
    return_freed_images_to_the_os()
    serve(create_app(settings), settings, settings.port)
