"""Real infrastructure for the suite: one Kafka (KRaft) and one Redis per test session on free
ports, and helpers that run the four services as real processes on unique topics and groups."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.webhooks import Receiver, running_receiver

from penguin12_client import Penguin12Client
from penguin12_devstack.ephemeral import ephemeral_infra, start_kafka_in
from penguin12_devstack.kafka import KafkaBroker, ensure_kafka_jars
from penguin12_devstack.ports import free_port, free_ports
from penguin12_devstack.services import ServiceProcess, start_service

ROOT = Path(__file__).resolve().parents[1]
# CI (CI=true, as .ci/run sets) must not go green on a skipped test whose tool was not installed.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The six real photographs beside the checkout (../shared/data/photos), or PENGUIN12_PHOTOS.
MODEL_CACHE = ROOT / ".cache" / "penguin12" / "models"
PHOTOS = Path(os.environ.get("PENGUIN12_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def missing_test_dependency(reason: str) -> None:
    """Skip a test whose tool (a browser, Jaeger) is unavailable; under CI=true, fail it instead.

    Outside CI the skip and its reason are printed in the summary at the end of the run (-ra).
    """
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing test dependency is a failure, not a skip)")
    pytest.skip(reason)


def read_topic(
    bootstrap: str, topic: str, *, quiet_s: float = 3.0, timeout: float = 60.0
) -> list[Any]:
    """Every record on ``topic`` from the start (a fresh group), once no new one came for
    ``quiet_s``: what is really queued there, whatever an API said about it."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": 4_000_000,
        }
    )
    consumer.subscribe([topic])
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    assigned = False
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.25)
            if not assigned and consumer.assignment():
                assigned, last = True, time.monotonic()
            if message is None or message.error() is not None:
                if assigned and time.monotonic() - last > quiet_s:
                    break
                continue
            found.append(message)
            last = time.monotonic()
    finally:
        consumer.close()
    return found


@dataclass
class Infra:
    bootstrap: str
    redis_url: str


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    base = tmp_path_factory.mktemp("infra")
    with ephemeral_infra(base, ROOT / ".cache" / "kafka") as (kafka, redis):
        yield Infra(kafka.bootstrap, redis.url)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated demo bundle (the "tiny" backbone): real loading code, fast tests."""
    from penguin12_model import generate_demo_bundle

    return generate_demo_bundle(tmp_path_factory.mktemp("model") / "demo-tiny", architecture="tiny")


@dataclass
class Stack:
    """The four services on their own topics, groups and ports: isolated from other tests."""

    infra: Infra
    model_dir: Path
    base: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        s = self.suffix
        return {
            "PENGUIN12_KAFKA_BOOTSTRAP": self.infra.bootstrap,
            "PENGUIN12_STATE_REDIS_URL": f"{self.infra.redis_url}/0",
            "PENGUIN12_CACHE_REDIS_URL": f"{self.infra.redis_url}/1",
            "PENGUIN12_TOPIC_PREPROCESSED": f"test-{s}.preprocessed",
            "PENGUIN12_TOPIC_FEATURES": f"test-{s}.features",
            "PENGUIN12_TOPIC_STATUS": f"test-{s}.status",
            "PENGUIN12_TOPIC_DEAD_LETTER": f"test-{s}.dead-letter",
            "PENGUIN12_MODEL_SOURCE": "local",
            "PENGUIN12_MODEL_DIR": str(self.model_dir),
            "PENGUIN12_MODEL_NUM_THREADS": "1",
            # The demo bundles are squash/bilinear/224 (the preprocessor's default is the
            # embedded detector's shorter_side_center_crop/bicubic/224).
            "PENGUIN12_PREPROCESSING": "squash/bilinear/224",
            # Absolute, so every service process shares one download of the embedded detector.
            "PENGUIN12_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "PENGUIN12_FEATURE_EXTRACTOR_GROUP": f"feature_extractor-{s}",
            "PENGUIN12_LOG_LEVEL": "INFO",
            **self.extra_env,
        }

    def topic(self, name: str) -> str:
        return self.env[f"PENGUIN12_TOPIC_{name.upper().replace('-', '_')}"]

    def start(self, name: str, *, wait: bool = True) -> ServiceProcess:
        kind = name.split("-")[0]
        port = self.ports.setdefault(name, free_port())
        env = {**self.env}
        if kind in ("preprocessor", "provenance"):
            env["PENGUIN12_PORT"] = str(port)
        else:
            env["PENGUIN12_METRICS_PORT"] = str(port)
            env["PENGUIN12_CONSUMER_GROUP"] = f"{kind}-{self.suffix}"
        if kind == "provenance":
            env["PENGUIN12_CONSUMER_GROUP"] = f"provenance-{self.suffix}"
        if "provenance" in self.ports:
            env["PENGUIN12_PUBLIC_STATUS_BASE_URL"] = f"http://127.0.0.1:{self.ports['provenance']}"
        proc = start_service(
            name,
            kind=kind,
            env=env,
            health_url=f"http://127.0.0.1:{port}/readyz",
            run_dir=self.base / name,
            log_file=self.base / f"{name}.log",
        )
        self.processes[name] = proc
        if wait:
            proc.wait_ready(120)
        return proc

    def start_all(self, feature_extractors: int = 1) -> Stack:
        self.ports.setdefault("provenance", free_port())
        names = ["provenance", "preprocessor", "classifier"]
        names += [f"feature_extractor-{i}" for i in range(feature_extractors)]
        for name in names:
            self.start(name, wait=False)
        for name in names:
            self.processes[name].wait_ready(120)
        return self

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def submit(
        self, data: bytes, filename: str = "image.jpg", content_type: str = "image/jpeg"
    ) -> httpx.Response:
        return httpx.post(
            self.url("preprocessor", "/v1/infer"),
            files={"file": (filename, data, content_type)},
            timeout=30,
        )

    def status(self, request_id: str) -> httpx.Response:
        return httpx.get(self.url("provenance", f"/v1/status/{request_id}"), timeout=10)

    def wait_final(self, request_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            body: dict[str, Any] = self.status(request_id).json()
            return body if body.get("status") in ("COMPLETED", "FAILED") else None

        return wait_for(final, timeout, 0.1, f"job {request_id} to finish")  # type: ignore[no-any-return]

    def metric(self, name: str, sample: str, labels: str = "") -> float:
        """A counter's value from a service's /metrics (0 when absent)."""
        text = httpx.get(self.url(name, "/metrics"), timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(sample) and labels in line and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] == sample:
                    total += float(value)
        return total

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.stop()


@pytest.fixture
def make_stack(infra: Infra, model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def factory(**extra_env: str) -> Stack:
        stack = Stack(infra, model_dir, tmp_path / f"stack{len(stacks)}", extra_env=extra_env)
        stacks.append(stack)
        return stack

    yield factory
    for stack in stacks:
        stack.stop()


@pytest.fixture(scope="module")
def stack(
    infra: Infra, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One running system shared by a module's tests (each test uses fresh request ids)."""
    s = Stack(
        infra,
        model_dir,
        tmp_path_factory.mktemp("stack"),
        extra_env={
            "PENGUIN12_MAX_IMAGE_PIXELS": "4000000",
            "PENGUIN12_MAX_UPLOAD_BYTES": str(10 * 2**20),
        },
    )
    try:
        yield s.start_all()
    finally:
        s.stop()


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[Callable[[], KafkaBroker]]:
    """A broker of this test's own, which it may stop and start again."""
    jars = ensure_kafka_jars(ROOT / ".cache" / "kafka")
    port, controller = free_ports(2)
    brokers = []

    def start() -> KafkaBroker:
        broker = start_kafka_in(tmp_path, jars, port, controller)
        broker.wait_ready(120)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))}
    if len(found) < 6:
        pytest.fail(
            f"the test photographs are missing: expected six JPEGs in {PHOTOS}", pytrace=False
        )
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as parsed YAML (the deployment and monitoring checks read it)."""
    import yaml

    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def client_stack(
    infra: Infra, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The stack the SDK and CLI tests talk to (one per module): private URLs allowed, so that
    images can be submitted by URL from a local web server."""
    stack = Stack(
        infra,
        model_dir,
        tmp_path_factory.mktemp("clients"),
        extra_env={
            "PENGUIN12_ALLOW_PRIVATE_URLS": "true",
            "PENGUIN12_URL_FETCH_TIMEOUT_S": "2",
            "PENGUIN12_MAX_UPLOAD_BYTES": str(3 * 2**20),
        },
    )
    try:
        yield stack.start_all()
    finally:
        stack.stop()


@pytest.fixture
def client(client_stack: Stack) -> Iterator[Penguin12Client]:
    with Penguin12Client(client_stack.url("preprocessor"), client_stack.url("provenance")) as sdk:
        yield sdk


@pytest.fixture
def photo_files(photos: dict[str, bytes], tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, data in photos.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = tmp_path / name
    return paths


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A local webhook receiver on a free port (support/webhooks.py), one per module."""
    with running_receiver() as rec:
        yield rec
