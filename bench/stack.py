"""The system under test, started for benchmarks only: its own Kafka, Redis, ports and topics.

Never the user's `make run` stack: Kafka and Redis run on free ports in a temporary directory
(or are shared between the scenarios of one `make bench` run through ``PENGUIN12_BENCH_*``
variables), topics and consumer groups carry a random suffix, and every process is a child of the
benchmark (``detach=False``), so it dies with it. The model is the efficientnet_b0 demo bundle,
the one `make run` serves when the real weights cannot be downloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CACHE, RESULTS, kafka_client, log
from penguin12_devstack.ephemeral import ephemeral_infra
from penguin12_devstack.ports import free_port
from penguin12_devstack.services import ServiceProcess, start_service

ARCHITECTURE = "efficientnet_b0"
# Where the engine caches derived artefacts (e.g. an ONNX export): shared, so no service re-exports.
MODEL_CACHE = CACHE / "penguin12" / "models"
_ENV_BOOTSTRAP = "PENGUIN12_BENCH_BOOTSTRAP"
_ENV_REDIS = "PENGUIN12_BENCH_REDIS_URL"
_ENV_PIDS = "PENGUIN12_BENCH_INFRA_PIDS"


#: Which model the benchmarks serve: ``demo`` (the efficientnet_b0 demo bundle, the historical
#: baseline) or ``embedded`` (the real default detector: CLIP ViT-B/16 INT8 + probe).
_ENV_MODEL = "PENGUIN12_BENCH_MODEL"


def bench_model() -> str:
    model = os.environ.get(_ENV_MODEL, "demo")
    if model not in ("demo", "embedded"):
        raise SystemExit(f"{_ENV_MODEL}={model!r}: use demo or embedded")
    return model


@functools.cache
def model_dir() -> Path:
    """The bundle the benchmarks serve (made or fetched once, before anything is timed)."""
    from penguin12_model import ModelSettings, resolve_bundle_dir

    if bench_model() == "embedded":
        settings = ModelSettings(source="embedded", cache_dir=MODEL_CACHE)
    else:
        settings = ModelSettings(
            source="demo", demo_architecture=ARCHITECTURE, cache_dir=CACHE / "models"
        )
    return resolve_bundle_dir(settings).resolve()


@functools.cache
def model_preprocessing() -> str:
    """What the served bundle wants the preprocessor to prepare (PENGUIN12_PREPROCESSING)."""
    from penguin12_model import BundleConfig

    return BundleConfig.from_file(model_dir() / "config.json").preprocessing.key


@dataclass
class Infra:
    bootstrap: str
    redis_url: str
    pids: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Variables that let child scenarios reuse this Kafka and Redis."""
        return {
            _ENV_BOOTSTRAP: self.bootstrap,
            _ENV_REDIS: self.redis_url,
            _ENV_PIDS: ",".join(f"{k}={v}" for k, v in self.pids.items()),
        }

    def redis(self, db: int = 0) -> Any:
        import redis

        return redis.Redis.from_url(f"{self.redis_url}/{db}", socket_timeout=10)


@contextlib.contextmanager
def infra() -> Iterator[Infra]:
    """Kafka (KRaft, full JIT) and Redis on free ports, or the ones the caller shares with us."""
    if os.environ.get(_ENV_BOOTSTRAP) and os.environ.get(_ENV_REDIS):
        pids = {}
        for item in filter(None, os.environ.get(_ENV_PIDS, "").split(",")):
            name, _, pid = item.partition("=")
            pids[name] = int(pid)
        yield Infra(os.environ[_ENV_BOOTSTRAP], os.environ[_ENV_REDIS], pids)
        return
    base = Path(tempfile.mkdtemp(prefix="penguin12-bench-"))
    log(f"starting Kafka and Redis (data in {base})")
    try:
        # Full JIT, as `make run`: we measure throughput, not start-up.
        with ephemeral_infra(base, CACHE / "kafka", fast_start=False) as (kafka, redis):
            log(f"Kafka on {kafka.bootstrap}, Redis on {redis.url}")
            pids = {"kafka": kafka.process.pid if kafka.process else 0}
            pids["redis"] = redis.process.pid if redis.process else 0
            warm_up_kafka(kafka.bootstrap)
            yield Infra(kafka.bootstrap, redis.url, pids)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def warm_up_kafka(bootstrap: str, seconds: float = 20.0) -> None:
    """Produce and consume image-sized records for a while before anything is measured.

    A fresh broker JVM spends its first tens of seconds compiling its hot paths: measured, the
    first scenario's broker used 8.4 CPU-ms per image against 2.4-4.5 for the later ones.
    """
    from confluent_kafka import Consumer, Producer

    topic = f"bench-warmup-{uuid.uuid4().hex[:8]}"
    value = os.urandom(150_000)
    producer = Producer({**kafka_client(bootstrap), "enable.idempotence": True, "acks": "all"})
    consumer = Consumer(
        {**kafka_client(bootstrap), "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    log(f"warming the broker up ({seconds:.0f} s of produce and fetch)")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for i in range(16):
                producer.produce(topic, value, key=str(i))
            producer.flush(30)
            consumer.consume(16, 0.05)
    finally:
        consumer.close()
        from confluent_kafka.admin import AdminClient

        AdminClient(kafka_client(bootstrap)).delete_topics([topic])


# What `penguin12.settings.WorkerSettings.cpu_nice` defaults to (the `make run` configuration).
DEFAULT_WORKER_NICE = 10


@dataclass
class BenchStack:
    """The four services on their own topics, groups and ports (like tests/conftest.py's Stack)."""

    infra: Infra
    label: str
    feature_extractors: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    # The workers' (feature extractors, classifier) nice level, PENGUIN12_CPU_NICE: 10 is the
    # services' default (the front door and provenance get the CPU first); 0 = same priority.
    worker_nice: int = DEFAULT_WORKER_NICE
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return RESULTS / "logs" / self.label

    def env(self) -> dict[str, str]:
        s = self.suffix
        redis_url = self.infra.redis_url
        return {
            "PENGUIN12_KAFKA_BOOTSTRAP": self.infra.bootstrap,
            "PENGUIN12_STATE_REDIS_URL": f"{redis_url}/0",
            "PENGUIN12_CACHE_REDIS_URL": f"{redis_url}/1",
            "PENGUIN12_TOPIC_PREPROCESSED": f"bench-{s}.preprocessed",
            "PENGUIN12_TOPIC_FEATURES": f"bench-{s}.features",
            "PENGUIN12_TOPIC_STATUS": f"bench-{s}.status",
            "PENGUIN12_TOPIC_DEAD_LETTER": f"bench-{s}.dead-letter",
            "PENGUIN12_MODEL_SOURCE": "local",
            "PENGUIN12_MODEL_DIR": str(model_dir()),
            "PENGUIN12_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "PENGUIN12_PREPROCESSING": model_preprocessing(),
            "PENGUIN12_HOST": "127.0.0.1",
            # The preprocessor measures the backlog as this group's lag (429 above its bound).
            "PENGUIN12_FEATURE_EXTRACTOR_GROUP": f"feature_extractor-{s}",
            **self.extra_env,
        }

    @property
    def topic_status(self) -> str:
        return f"bench-{self.suffix}.status"

    def names(self) -> list[str]:
        fes = [f"feature_extractor-{i}" for i in range(self.feature_extractors)]
        return ["provenance", "preprocessor", "classifier", *fes]

    def start(self) -> BenchStack:
        """Empty Redis (our own server), then start every service and wait until all are ready."""
        with contextlib.suppress(Exception):
            self.infra.redis(0).flushall()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ports["provenance"] = free_port()
        for name in self.names():
            self._start(name)
        for proc in self.processes.values():
            proc.wait_ready(180)
        log(
            f"stack {self.label} ready: {self.feature_extractors} feature extractor(s), "
            f"preprocessor :{self.ports['preprocessor']}, provenance :{self.ports['provenance']}"
        )
        return self

    def _start(self, name: str) -> None:
        kind = name.split("-")[0]
        port = self.ports.setdefault(name, free_port())
        env = self.env()
        if kind in ("preprocessor", "provenance"):
            env["PENGUIN12_PORT"] = str(port)
        else:
            env["PENGUIN12_METRICS_PORT"] = str(port)
            env["PENGUIN12_CPU_NICE"] = str(self.worker_nice)
        env["PENGUIN12_CONSUMER_GROUP"] = f"{kind}-{self.suffix}"
        env["PENGUIN12_PUBLIC_STATUS_BASE_URL"] = f"http://127.0.0.1:{self.ports['provenance']}"
        self.processes[name] = start_service(
            name,
            kind=kind,
            env=env,
            health_url=f"http://127.0.0.1:{port}/readyz",
            run_dir=self.log_dir / "run" / name,
            log_file=self.log_dir / f"{name}.log",
        )

    def pids(self) -> dict[str, int]:
        pids = {name: p.process.pid for name, p in self.processes.items()}
        return {**pids, **self.infra.pids}

    def port(self, name: str) -> int:
        return self.ports[name]

    def metric(self, name: str, sample: str, labels: str = "") -> float:
        """Sum of a sample's values on a service's /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.ports[name]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(sample) and labels in line:
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] == sample:
                    total += float(value)
        return total

    def fe_metric(self, sample: str, labels: str = "") -> float:
        return sum(self.metric(n, sample, labels) for n in self.names() if n.startswith("feature_"))

    def batch_stats(self) -> dict[str, float]:
        """Counters that explain throughput: batches, images per batch, cache hits and misses."""
        batches = self.fe_metric("penguin12_batch_size_count")
        records = self.fe_metric("penguin12_batch_size_sum")
        return {
            "fe_batches": batches,
            "fe_records": records,
            "fe_backbone_images": self.fe_metric("penguin12_backbone_images_total"),
            # Where a batch's time goes: processing (decode, cache, model) and awaiting the acks.
            "fe_processing_s": self.fe_metric("penguin12_processing_seconds_sum"),
            "fe_delivery_s": self.fe_metric("penguin12_delivery_seconds_sum"),
            "fe_cache_hits": self.fe_metric("penguin12_embedding_cache_total", 'result="hit"'),
            "fe_cache_misses": self.fe_metric("penguin12_embedding_cache_total", 'result="miss"'),
        }

    def engine(self) -> str:
        """What the first feature extractor says it runs ("runtime=... threads=..."), from its log."""
        log_file = self.log_dir / "feature_extractor-0.log"
        with contextlib.suppress(OSError):
            for line in log_file.read_text(errors="replace").splitlines():
                if "feature extractor ready" in line:
                    words = line.split("feature extractor ready:", 1)[1].split()
                    return " ".join(w for w in words if w.startswith(("runtime=", "threads=")))
        return "unknown"

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.stop()
        self.processes.clear()
        self._delete_topics()

    def _delete_topics(self) -> None:
        from confluent_kafka.admin import AdminClient

        names = [v for k, v in self.env().items() if k.startswith("PENGUIN12_TOPIC_")]
        admin = AdminClient(kafka_client(self.infra.bootstrap))
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)

    def __enter__(self) -> BenchStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StatusWatcher:
    """Reads the status topic as a bystander (no load on provenance) and records each job's steps.

    ``steps[request_id]`` maps a status to its ``at`` (the time the service sent it), so per-stage
    latency comes from the services' own timestamps; ``await wait_final(id)`` resolves when the
    job's COMPLETED or FAILED record is seen.
    """

    def __init__(self, bootstrap: str, topic: str):
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            {
                **kafka_client(bootstrap),
                "group.id": f"bench-watch-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                # The broker answers a fetch as soon as a record arrives (fetch.min.bytes=1), so
                # the default wait costs no latency; a short one would only burn broker CPU.
            }
        )
        meta = self._consumer.list_topics(topic, timeout=30).topics[topic]
        assignment = []
        for partition in meta.partitions:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=30
            )
            assignment.append(TopicPartition(topic, partition, high))
        self._consumer.assign(assignment)
        self.steps: dict[str, dict[str, float]] = {}
        self.seen_at: dict[str, float] = {}
        self.finished = 0
        self.finished_times: list[float] = []
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-watcher", daemon=True)
        self._thread.start()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(500, timeout=0.1):
                if message.error() is not None:
                    continue
                try:
                    data = json.loads(message.value())
                    rid, status, at = data["request_id"], data["status"], float(data["at"])
                except (ValueError, KeyError, TypeError):
                    continue
                now = time.time()
                with self._lock:
                    steps = self.steps.setdefault(rid, {})
                    first = status not in steps
                    steps.setdefault(status, at)
                    if status in ("COMPLETED", "FAILED") and first:
                        self.seen_at[rid] = now
                        self.finished += 1
                        self.finished_times.append(time.monotonic())
                if status in ("COMPLETED", "FAILED") and self._loop is not None:
                    self._loop.call_soon_threadsafe(self._resolve, rid, status)
        self._consumer.close()

    def _resolve(self, rid: str, status: str) -> None:
        future = self._waiters.pop(rid, None)
        if future is not None and not future.done():
            future.set_result(status)

    async def wait_final(self, rid: str, limit_s: float) -> str | None:
        """COMPLETED/FAILED once the job's final record is on the topic; None on timeout."""
        with self._lock:
            steps = self.steps.get(rid, {})
            for status in ("COMPLETED", "FAILED"):
                if status in steps:
                    return status
            future = self._waiters.setdefault(rid, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(future, limit_s)
        except TimeoutError:
            self._waiters.pop(rid, None)
            return None

    def finished_between(self, t0: float, t1: float) -> int:
        with self._lock:
            return sum(t0 <= t < t1 for t in self.finished_times)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
