"""At-least-once under crashes, scale-out, a Redis outage and a broken model bundle."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch
from confluent_kafka import Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from conftest import Infra, Stack, read_topic, wait_for
from penguin12.schemas import ImageJob, decode, encode
from penguin12_devstack.ports import free_port
from penguin12_devstack.readiness import http_ok
from penguin12_devstack.redis_server import RedisServer, start_redis


def submit_many(stack: Stack, images: list[bytes]) -> list[str]:
    ids = []
    for data in images:
        response = stack.submit(data)
        assert response.status_code == 202, response.text
        ids.append(response.json()["request_id"])
    return ids


def assert_all_completed(stack: Stack, ids: list[str], timeout: float = 90) -> None:
    statuses = [stack.wait_final(i, timeout)["status"] for i in ids]
    assert statuses == ["COMPLETED"] * len(ids), statuses


@pytest.mark.parametrize(
    "victim", ["feature_extractor-0", "classifier", "provenance", "preprocessor"]
)
def test_kill_9_mid_flight_loses_no_accepted_job(
    make_stack: Callable[..., Stack], photos: dict[str, bytes], victim: str
) -> None:
    stack = make_stack(PENGUIN12_MAX_BATCH_SIZE="1").start_all()
    images = list(photos.values()) * 3
    accepted = submit_many(stack, images[:9])
    stack.processes[victim].kill()
    if victim != "preprocessor":
        accepted += submit_many(stack, images[9:])  # queue more while it is down
    stack.start(victim)
    if victim == "preprocessor":
        accepted += submit_many(stack, images[9:])
    assert_all_completed(stack, accepted)


def _set_topic_config(infra: Infra, topic: str, name: str, value: str | None) -> None:
    """Set (or, with None, remove) one topic-level config on the broker."""
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry(name, value or "", incremental_operation=op)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": infra.bootstrap})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


TAKEN = ("PROCESSING_FEATURES", "CLASSIFYING")


def test_kill_9_of_a_worker_in_the_middle_of_a_batch(
    make_stack: Callable[..., Stack], infra: Infra, photos: dict[str, bytes]
) -> None:
    """The feature extractor has taken a batch (its jobs say PROCESSING_FEATURES) and produced
    the features, which the broker refuses to acknowledge (the features topic is set to take no
    record that large), so the worker rewinds and retries: it provably holds the batch
    unacknowledged, its offsets not stored, when it is killed. A new one redoes the work."""
    stack = make_stack(PENGUIN12_MAX_BATCH_SIZE="16").start_all()
    warm = stack.submit(photos["chelsea.jpg"]).json()["request_id"]
    assert stack.wait_final(warm)["status"] == "COMPLETED"
    features = stack.topic("features")
    _set_topic_config(infra, features, "max.message.bytes", "64")
    try:
        images = [data + uuid.uuid4().bytes for data in photos.values()]
        ids = submit_many(stack, images)
        # The worker takes what is there (at least the first job): its status updates say so
        # (they go to the status topic, which accepts them; CLASSIFYING is sent with the features).
        taken = wait_for(
            lambda: [i for i in ids if stack.status(i).json()["status"] in TAKEN],
            60,
            0.2,
            "the feature extractor to take a batch",
        )
        # Taken, and its features never acknowledged: none reached the features topic.
        downstream = {m.key().decode() for m in read_topic(infra.bootstrap, features, quiet_s=1)}
        assert not downstream & set(ids)
        worker = stack.processes["feature_extractor-0"]
        wait_for(
            lambda: (
                "transient failure, rewinding to last stored offset" in worker.log_file.read_text()
            ),
            60,
            0.2,
            "the worker to retry its unacknowledged batch",
        )
        assert worker.process.poll() is None
        assert all(stack.status(i).json()["status"] in TAKEN for i in taken)  # none finished
        worker.kill()
    finally:
        _set_topic_config(infra, features, "max.message.bytes", None)
    stack.start("feature_extractor-0")
    assert_all_completed(stack, ids, 120)


def test_two_feature_extractors_share_the_work(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_MAX_BATCH_SIZE="1").start_all(feature_extractors=2)
    extractors = ("feature_extractor-0", "feature_extractor-1")
    # Ready means the model is loaded; the group may still be rebalancing. Wait until the
    # partitions are split, as an operator would watch `penguin12_assigned_partitions`.
    wait_for(
        lambda: all(stack.metric(n, "penguin12_assigned_partitions") > 0 for n in extractors),
        60,
        0.2,
        "both feature extractors to own partitions",
    )
    # Distinct images (no cache hits) so that both processes really run the backbone.
    base = list(photos.values())
    images = [data + uuid.uuid4().bytes for data in base * 4]  # trailing bytes: same picture
    accepted = submit_many(stack, images)
    assert_all_completed(stack, accepted)
    processed = [stack.metric(name, "penguin12_batch_size_count") for name in extractors]
    assert all(count > 0 for count in processed), processed
    assert sum(processed) >= len(images)


def test_sigterm_stops_a_worker_cleanly(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    worker = stack.start("classifier")
    worker.process.terminate()
    assert worker.process.wait(timeout=30) == 0
    assert "stopped" in worker.log_file.read_text()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """A Redis of this test's own (same port and data each start), which it may stop: the
    session's Redis, which other tests share, is never touched."""
    port = free_port()
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = start_redis(
            data_dir=tmp_path / "redis", log_file=tmp_path / "redis.log", port=port
        )
        server.wait_ready(30)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _ready(stack: Stack, name: str) -> tuple[int, dict[str, str]]:
    response = httpx.get(stack.url(name, "/readyz"), timeout=10)
    return response.status_code, response.json()


def test_redis_outage_skips_the_cache_not_the_job_and_state_recovers(
    make_stack: Callable[..., Stack],
    own_redis: Callable[[], RedisServer],
    photos: dict[str, bytes],
) -> None:
    redis_server = own_redis()
    stack = make_stack(
        PENGUIN12_STATE_REDIS_URL=f"{redis_server.url}/0",
        PENGUIN12_CACHE_REDIS_URL=f"{redis_server.url}/1",
    ).start_all()
    before = stack.submit(photos["chelsea.jpg"]).json()["request_id"]
    assert stack.wait_final(before)["status"] == "COMPLETED"
    assert _ready(stack, "preprocessor") == (200, {"kafka": "ok", "redis": "ok"})
    assert _ready(stack, "provenance")[0] == 200

    redis_server.stop()
    # Readiness says which dependency is gone, and turns red.
    wait_for(
        lambda: _ready(stack, "preprocessor") == (503, {"kafka": "ok", "redis": "unreachable"}),
        30,
        0.2,
        "the preprocessor's /readyz to report Redis down",
    )
    wait_for(
        lambda: (r := _ready(stack, "provenance"))[0] == 503 and r[1]["redis"] == "unreachable",
        30,
        0.2,
        "provenance's /readyz to report Redis down",
    )

    # A job accepted while Redis is down: Kafka holds it, the feature extractor computes the
    # embedding without its cache, and the job goes on (its state waits for Redis).
    cache_errors = stack.metric(
        "feature_extractor-0", "penguin12_embedding_cache_total", 'result="error"'
    )
    during = stack.submit(photos["rocket.jpg"] + uuid.uuid4().bytes)
    assert during.status_code == 202, during.text
    during_id = during.json()["request_id"]
    wait_for(
        lambda: (
            stack.metric("feature_extractor-0", "penguin12_embedding_cache_total", 'result="error"')
            > cache_errors
        ),
        60,
        0.3,
        "the feature extractor to skip its unreachable cache",
    )
    wait_for(
        lambda: stack.metric("classifier", "penguin12_messages_total", 'outcome="ok"') >= 2,
        60,
        0.3,
        "the job to be classified while Redis is down",
    )
    assert "embedding cache unavailable, computing instead" in (
        stack.processes["feature_extractor-0"].log_file.read_text()
    )

    own_redis()  # back (same port, same data)
    wait_for(lambda: _ready(stack, "preprocessor")[0] == 200, 60, 0.3, "preprocessor ready")
    wait_for(lambda: _ready(stack, "provenance")[0] == 200, 90, 0.3, "provenance ready")
    assert stack.wait_final(during_id, 120)["status"] == "COMPLETED"
    assert stack.status(before).json()["status"] == "COMPLETED"


def test_a_failing_batch_is_retried_record_by_record(
    make_stack: Callable[..., Stack], infra: Infra, photos: dict[str, bytes]
) -> None:
    """Jobs queue up while no feature extractor runs; one of them is malformed. When the worker
    starts, it takes the queue in micro-batches of more than one record; the batch holding the bad
    record fails as a whole and is retried one record at a time, so only the bad job fails."""
    # Prepared pixels on the topic (not deferred uploads), so that one job's can be cut short.
    stack = make_stack(PENGUIN12_MAX_BATCH_SIZE="16", PENGUIN12_DEFER_DECODE="false")
    stack.start("provenance")
    stack.start("preprocessor")
    stack.start("classifier")
    images = [data + uuid.uuid4().bytes for data in list(photos.values()) * 2]
    good = [stack.submit(data).json()["request_id"] for data in images]
    # Copy a queued job, give it its own id and cut its pixels short: valid JSON and schema,
    # but the backbone cannot take it. Same key as its original: the same partition, so it is
    # fetched together with the others.
    [queued] = [
        m
        for m in read_topic(infra.bootstrap, stack.topic("preprocessed"), quiet_s=1)
        if m.key().decode() == good[0]
    ]
    job = decode(ImageJob, queued.value())
    bad_id = str(uuid.uuid4())
    bad = job.model_copy(update={"request_id": bad_id, "pixels": job.pixels[:-300]})
    producer = Producer({"bootstrap.servers": infra.bootstrap})
    producer.produce(stack.topic("preprocessed"), encode(bad), key=good[0])
    assert producer.flush(10) == 0

    stack.start("feature_extractor-0")
    assert_all_completed(stack, good)
    failed = stack.wait_final(bad_id)
    assert failed["status"] == "FAILED"
    assert f"pixels hold {len(bad.pixels)} bytes" in failed["error"]
    log = stack.processes["feature_extractor-0"].log_file.read_text()
    retried = [
        int(n) for n in re.findall(r"batch of (\d+) failed; retrying its records one by one", log)
    ]
    assert retried and max(retried) > 1, log[-3000:]
    # Micro-batching formed batches of more than one record from the queue.
    batches = stack.metric("feature_extractor-0", "penguin12_batch_size_count")
    records = stack.metric("feature_extractor-0", "penguin12_batch_size_sum")
    assert records > batches > 0, (records, batches)


@pytest.mark.parametrize(
    ("service", "weights_file"),
    [("feature_extractor-0", "backbone_weights.pt"), ("classifier", "classifier_head.pt")],
)
def test_a_bundle_that_does_not_fit_its_architecture_stops_the_service(
    make_stack: Callable[..., Stack],
    model_dir: Path,
    tmp_path: Path,
    service: str,
    weights_file: str,
) -> None:
    broken = tmp_path / "broken-bundle"
    shutil.copytree(model_dir, broken)
    state = torch.load(broken / weights_file, weights_only=True)
    names = [k for k, v in state.items() if v.ndim >= 1]
    missing, misshaped = names[0], names[-1]
    del state[missing]
    state[misshaped] = torch.zeros(*(d + 1 for d in state[misshaped].shape))
    torch.save(state, broken / weights_file)

    stack = make_stack(PENGUIN12_MODEL_DIR=str(broken))
    proc = stack.start(service, wait=False)
    deadline = time.monotonic() + 180
    while proc.process.poll() is None:
        assert time.monotonic() < deadline, "the service kept running with a broken bundle"
        assert not http_ok(proc.health_url), "readiness turned green with a broken bundle"
        time.sleep(0.2)
    assert proc.process.returncode != 0
    log = proc.log_file.read_text()
    assert missing in log and misshaped in log, log[-3000:]
    assert re.search(r"missing", log, re.I) and re.search(r"shape", log, re.I), log[-3000:]
