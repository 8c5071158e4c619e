"""Running a Kafka worker as a process: settings, pre-start checks, signals, metrics port."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from penguin12.kafka import AsyncProducer, ensure_topics, kafka_reachable, producer_config
from penguin12.logs import setup_logging
from penguin12.metrics import MODEL_INFO, serve_worker_http
from penguin12.settings import WorkerSettings
from penguin12.tracing import setup_tracing, shutdown_tracing
from penguin12.worker import EarlyOutputs, M, Output, Record, StreamWorker

log = logging.getLogger("penguin12.runner")


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not reachable after {timeout_s:.0f}s; giving up")
        log.info("waiting for %s", what)
        time.sleep(1.0)


def run_worker(
    settings: WorkerSettings,
    build: Callable[[AsyncProducer], StreamWorker[Any]],
    extra_ready: Callable[[], bool] = lambda: True,
) -> None:
    """Set up, then consume until SIGTERM/SIGINT; finishes the batch in hand before exiting."""
    setup_logging(settings.service_name, settings.log_level)
    if settings.cpu_nice:
        os.nice(settings.cpu_nice)  # lowering one's own priority needs no privilege
    setup_tracing(settings.service_name, settings.otlp_endpoint)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    holder: dict[str, StreamWorker[Any]] = {}
    serve_worker_http(
        settings.metrics_port, lambda: extra_ready() and "w" in holder and holder["w"].ready
    )
    wait_for(lambda: kafka_reachable(settings), "Kafka", settings.startup_timeout_s)
    ensure_topics(settings)
    producer = AsyncProducer(producer_config(settings))
    try:
        worker = build(producer)
        worker.producer = producer
        holder["w"] = worker
        log.info("consuming %s as group %s", worker.source_topic, worker.group_id)
        worker.run(stop)
    finally:
        producer.close()
        shutdown_tracing()
        log.info("stopped")


class LoadableModel(Protocol):
    """What a model service's model offers (penguin12_model's engines, MLServer style)."""

    @property
    def ready(self) -> bool: ...

    @property
    def info(self) -> Any: ...

    def load(self) -> None: ...


def stream_worker(
    settings: WorkerSettings,
    source_topic: str,
    schema: type[M],
    handle_batch: Callable[[list[Record[M]]], list[Output]],
    producer: AsyncProducer | None,
    early: EarlyOutputs | None = None,
) -> StreamWorker[M]:
    """A `StreamWorker` consuming ``source_topic`` with the service's group and batching."""
    return StreamWorker(
        settings=settings,
        group_id=settings.consumer_group,
        source_topic=source_topic,
        schema=schema,
        handle_batch=handle_batch,
        early=early,
        max_batch_size=settings.max_batch_size,
        max_batch_wait_s=settings.max_batch_wait_ms / 1000,
        producer=producer,
    )


def run_model_worker(
    settings: WorkerSettings,
    model: LoadableModel,
    build_worker: Callable[[AsyncProducer], StreamWorker[Any]],
) -> None:
    """`run_worker` for a model service: load the model first; ready only once it is loaded."""

    def build(producer: AsyncProducer) -> StreamWorker[Any]:
        model.load()
        info = model.info
        MODEL_INFO.labels(info.name, info.version, info.architecture, str(info.demo).lower()).set(1)
        return build_worker(producer)

    run_worker(settings, build, extra_ready=lambda: model.ready)
