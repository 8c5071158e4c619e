"""The preprocessor's FastAPI app: wiring, pre-start checks and health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response, status
from starlette.concurrency import run_in_threadpool

from penguin12.kafka import AsyncProducer, KafkaHealth, producer_config
from penguin12.logs import setup_logging
from penguin12.web import AccessGuard, connect_infrastructure, install_common, serve
from preprocessor import batch
from preprocessor.admission import Admission, BacklogMonitor
from preprocessor.api import router
from preprocessor.jobs import IdempotencyRegistry, JobPublisher
from preprocessor.settings import PreprocessorSettings
from preprocessor.ui import install_ui

log = logging.getLogger("penguin12.preprocessor")


def create_app(settings: PreprocessorSettings | None = None) -> FastAPI:
    settings = settings or PreprocessorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client, store = await connect_infrastructure(settings)
        delivery_ms = int(settings.delivery_timeout_s * 1000)
        health = KafkaHealth(settings)
        health.start()
        producer = AsyncProducer(
            producer_config(settings, delivery_timeout_ms=delivery_ms), health.recheck
        )
        app.state.kafka_health = health
        app.state.settings = settings
        app.state.store = store
        app.state.publisher = JobPublisher(settings, producer, store, health)
        app.state.guard = AccessGuard(settings, client, scope="submit")
        backlog = BacklogMonitor(settings, health)
        backlog.start()
        app.state.admission = Admission(
            backlog,
            IdempotencyRegistry(
                client, settings.idempotency_ttl_s, settings.idempotency_pending_ttl_s
            ),
        )
        log.info(
            "ready: accepting uploads; status URLs point at %s", settings.public_status_base_url
        )
        try:
            yield
        finally:
            backlog.stop()
            await run_in_threadpool(producer.close)
            health.stop()
            store.close()

    app = FastAPI(
        title="Penguin12 preprocessor",
        version="0.1.0",
        description="Submit images for deepfake analysis. Poll the returned status_url.",
        lifespan=lifespan,
    )
    install_common(app, settings)
    app.include_router(router)
    app.include_router(batch.router)
    install_ui(app)

    @app.get("/readyz", tags=["health"], summary="Readiness: Kafka and Redis reachable")
    async def readyz(request: Request, response: Response) -> dict[str, str]:
        kafka_ok = bool(request.app.state.kafka_health.up)
        redis_ok = await run_in_threadpool(request.app.state.store.ping)
        if not (kafka_ok and redis_ok):
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"kafka": _word(kafka_ok), "redis": _word(redis_ok)}

    return app


def _word(ok: bool) -> str:
    return "ok" if ok else "unreachable"


def main() -> None:
    settings = PreprocessorSettings()
    setup_logging(settings.service_name, settings.log_level)
    serve(create_app(settings), settings, settings.port)
