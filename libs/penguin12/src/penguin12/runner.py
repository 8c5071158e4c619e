"""Running a Kafka worker as a process: settings, pre-start checks, signals, metrics port."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from penguin12.kafka import AsyncProducer, ensure_topics, kafka_reachable, producer_config
from penguin12.logs import setup_logging
from penguin12.metrics import MODEL_INFO, serve_worker_http
from penguin12.settings import CommonSettings
from penguin12.tracing import setup_tracing, shutdown_tracing
from penguin12.worker import StreamWorker

log = logging.getLogger("penguin12.runner")


class WorkerSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    consumer_group: str = "penguin12"
    metrics_port: int = 9100
    max_batch_size: int = 1
    # Extra time to wait for a batch to fill; 0 takes only what is already fetched (no idle delay).
    max_batch_wait_ms: float = 0.0
    startup_timeout_s: float = 120.0
    # Workers yield the CPU to the front door where they share cores: accept latency stays low
    # while the workers are saturated (docs/benchmarks.md, scenario 3). 0 = same priority.
    cpu_nice: int = Field(10, ge=0, le=19)


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
