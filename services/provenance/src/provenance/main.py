"""The provenance FastAPI app; the status consumer runs beside it in a thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from penguin12.kafka import AsyncProducer, producer_config
from penguin12.logs import setup_logging
from penguin12.schemas import StatusUpdate
from penguin12.ssrf import UrlPolicy
from penguin12.state import JobStore, redis_options
from penguin12.web import (
    AccessGuard,
    connect_infrastructure,
    install_common,
    install_readiness,
    serve,
)
from penguin12.worker import StreamWorker
from provenance import live
from provenance.api import router
from provenance.maintenance import Maintenance, rebuild_state
from provenance.notifier import StatusNotifier
from provenance.recorder import StatusRecorder
from provenance.settings import ProvenanceSettings
from provenance.webhooks import routes as webhook_routes
from provenance.webhooks.dispatcher import WebhookDispatcher
from provenance.webhooks.queue import WebhookQueue, WebhookTrigger

log = logging.getLogger("penguin12.provenance")


def create_app(settings: ProvenanceSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client, aclient, store = await connect_infrastructure(settings)
        hooks = WebhookQueue(client, store, settings.job_retention_s)
        dispatcher = WebhookDispatcher(hooks, store, settings, UrlPolicy.from_settings(settings))
        dispatcher.start()
        worker = StreamWorker(
            settings=settings,
            group_id=settings.consumer_group,
            source_topic=settings.topic_status,
            schema=StatusUpdate,
            handle_batch=WebhookTrigger(StatusRecorder(store), hooks),
            max_batch_size=256,
        )
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), name="status-consumer")
        thread.start()
        notifier = StatusNotifier(settings.state_redis_url, redis_options(settings))
        app.state.store = store
        app.state.worker = worker
        app.state.notifier = notifier
        app.state.webhook_queue = hooks
        app.state.guard = AccessGuard(settings, aclient, scope="status")
        producer = AsyncProducer(producer_config(settings))
        maintenance = Maintenance(settings, store, producer)
        maintenance.start()
        log.info("ready: recording status updates from %s", settings.topic_status)
        try:
            yield
        finally:
            await notifier.stop()
            dispatcher.stop()
            maintenance.stop()
            producer.close()
            stop.set()
            await run_in_threadpool(thread.join, 30)
            await store.close_async()

    app = FastAPI(
        title="Penguin12 provenance",
        version="0.1.0",
        description="Job status for Penguin12 submissions.",
        lifespan=lifespan,
    )
    install_common(app, settings)
    app.include_router(router)
    app.include_router(live.router)
    app.include_router(webhook_routes.router)
    install_readiness(
        app,
        "Readiness: Redis reachable, consumer running",
        redis=(lambda state: state.store.ping(), "unreachable"),
        status_consumer=(lambda state: bool(state.worker.ready), "not consuming"),
    )
    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m provenance` serves; `python -m provenance rebuild` re-reads the status log."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m provenance")
    parser.add_argument("command", nargs="?", choices=["serve", "rebuild"], default="serve")
    args = parser.parse_args(argv)
    settings = ProvenanceSettings()
    setup_logging(settings.service_name, settings.log_level)
    if args.command == "rebuild":
        store = JobStore.from_url(settings.state_redis_url, settings.job_retention_s, settings)
        rebuild_state(settings, store)
        return
    serve(create_app(settings), settings, settings.port)
