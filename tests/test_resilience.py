"""At-least-once under crashes, poison messages, scale-out, and state that never moves back."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import torch
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from conftest import Infra, Stack, read_topic, wait_for
from penguin12.schemas import ImageJob, JobStatus, ModelInfo, Result, StatusUpdate, encode
from penguin12.state import JobStore
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


def _dead_letters(
    infra: Infra, topic: str, expected: int, timeout: float = 30
) -> list[dict[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": infra.bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append({k: (v or b"").decode() for k, v in message.headers() or []})
    finally:
        consumer.close()
    return found


def test_poison_messages_are_dead_lettered_and_fail_their_job(
    stack: Stack, infra: Infra, photos: dict[str, bytes]
) -> None:
    wrong_version = str(uuid.uuid4())
    missing_fields = str(uuid.uuid4())
    bad_status = str(uuid.uuid4())
    poison = [
        (stack.topic("preprocessed"), b"\x00\xffnot json at all"),
        (
            stack.topic("preprocessed"),
            json.dumps(
                {"schema_version": 99, "request_id": wrong_version, "submitted_at": 1.0}
            ).encode(),
        ),
        (
            stack.topic("features"),
            json.dumps(
                {"schema_version": 1, "request_id": missing_fields, "submitted_at": 1.0}
            ).encode(),
        ),
        (
            stack.topic("status"),
            json.dumps(
                {
                    "schema_version": 1,
                    "request_id": bad_status,
                    "submitted_at": 1.0,
                    "status": "EXPLODED",
                    "service": "x",
                }
            ).encode(),
        ),
        (stack.topic("status"), b"[1, 2, 3]"),
        # Over the 1 MB record limit, yet past the broker: it compresses to almost nothing.
    ]
    oversized_id = str(uuid.uuid4())
    producer = Producer(
        {
            "bootstrap.servers": infra.bootstrap,
            "compression.type": "lz4",
            "message.max.bytes": 3_000_000,
        }
    )
    for topic, value in poison:
        producer.produce(topic, value)
    producer.produce(stack.topic("preprocessed"), b"{" + b" " * 2_000_000 + b"}", key=oversized_id)
    assert producer.flush(10) == 0

    dead = _dead_letters(infra, stack.topic("dead-letter"), len(poison) + 1)
    assert len(dead) == len(poison) + 1
    reasons = " | ".join(d["penguin12.dlq.reason"] for d in dead)
    assert "not valid JSON" in reasons
    assert "unsupported schema_version" in reasons
    assert "invalid FeaturesMessage" in reasons
    assert "invalid StatusUpdate: status" in reasons
    assert "over the 1,000,000-byte limit" in reasons
    oversized = next(d for d in dead if "byte limit" in d["penguin12.dlq.reason"])
    assert oversized["penguin12.dlq.truncated"] == "2000002"

    for request_id, phrase in (
        (wrong_version, "unsupported schema_version"),
        (missing_fields, "invalid FeaturesMessage"),
        (bad_status, "invalid StatusUpdate"),
        (oversized_id, "over the 1,000,000-byte limit"),
    ):
        final = stack.wait_final(request_id)
        assert final["status"] == "FAILED"
        assert phrase in final["error"]

    # The consumers are still alive and working.
    assert (
        stack.wait_final(stack.submit(photos["chelsea.jpg"]).json()["request_id"])["status"]
        == "COMPLETED"
    )


def test_state_never_moves_backwards(infra: Infra) -> None:
    store = JobStore(redis.Redis.from_url(f"{infra.redis_url}/0"), retention_s=60)
    rid = str(uuid.uuid4())

    def update(status: JobStatus, at: float, error: str | None = None) -> bool:
        return store.apply(
            StatusUpdate(
                request_id=rid, submitted_at=100.0, status=status, at=at, service="t", error=error
            )
        )

    assert update(JobStatus.PROCESSING_FEATURES, 101.0)
    assert not update(JobStatus.PENDING, 100.0)  # late PENDING: ignored
    assert update(JobStatus.FAILED, 103.0, "boom")
    assert not update(JobStatus.PROCESSING_FEATURES, 104.0)  # redelivery after the end
    assert not update(JobStatus.COMPLETED, 105.0)  # a terminal state is final
    state = store.get(rid)
    assert state is not None
    assert (state.status, state.submitted_at, state.last_updated, state.error) == (
        JobStatus.FAILED,
        100.0,
        103.0,
        "boom",
    )
    assert 0 < store._redis.ttl(f"penguin12:job:{rid}") <= 60  # type: ignore[attr-defined]


def test_a_batch_of_updates_applies_in_order_and_publishes_each_change(infra: Infra) -> None:
    client = redis.Redis.from_url(f"{infra.redis_url}/0")
    store = JobStore(client, retention_s=60)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    events = client.pubsub()
    events.subscribe(f"penguin12:job-events:{a}", f"penguin12:job-events:{b}")
    wait_for(lambda: events.get_message(timeout=0.1) is None, 5)  # subscribe confirmations read

    def update(rid: str, status: JobStatus, at: float, **extra: str) -> StatusUpdate:
        return StatusUpdate(
            request_id=rid, submitted_at=100.0, status=status, at=at, service="t", **extra
        )

    applied = store.apply_many(
        [
            update(a, JobStatus.PROCESSING_FEATURES, 101.0, callback_url="https://hook.example/a"),
            update(b, JobStatus.PENDING, 100.0),
            update(a, JobStatus.PENDING, 100.5),  # late: ignored, but its callback URL is kept
            update(a, JobStatus.FAILED, 103.0, error="boom"),
            update(a, JobStatus.COMPLETED, 104.0),  # a terminal state is final
        ]
    )
    assert applied == [True, True, False, True, False]
    state_a, state_b = store.get(a), store.get(b)
    assert state_a is not None and (state_a.status, state_a.error) == (JobStatus.FAILED, "boom")
    assert state_b is not None and state_b.status == JobStatus.PENDING
    assert client.hget(f"penguin12:job:{a}", "callback_url") == b"https://hook.example/a"
    published: list[tuple[bytes, bytes]] = []

    def three_events() -> bool:
        message = events.get_message(timeout=0.2)
        if message and message["type"] == "message":
            published.append((message["channel"], message["data"]))
        return len(published) == 3

    wait_for(three_events, 10)
    assert published == [
        (f"penguin12:job-events:{a}".encode(), b"PROCESSING_FEATURES"),
        (f"penguin12:job-events:{b}".encode(), b"PENDING"),
        (f"penguin12:job-events:{a}".encode(), b"FAILED"),
    ]
    events.close()
    assert store.apply_many([]) == []


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
    job = ImageJob.model_validate_json(queued.value())
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


def test_a_reopened_job_starts_a_new_attempt_and_a_replay_agrees(infra: Infra) -> None:
    """`dlq replay` re-opens a FAILED job; rebuilding from the log must reach the same answer.

    The history is in status-log order: a late FAILED of the first run comes before the re-open
    (the replayer produces the re-open after everything the first run wrote), so it is the new
    run's updates, after the re-open, that count.
    """
    rid = str(uuid.uuid4())
    history = [
        StatusUpdate(
            request_id=rid, submitted_at=1.0, status=JobStatus.PENDING, at=1.0, service="t"
        ),
        StatusUpdate(
            request_id=rid,
            submitted_at=1.0,
            status=JobStatus.FAILED,
            at=2.0,
            service="t",
            error="bug",
        ),
        StatusUpdate(
            request_id=rid,
            submitted_at=1.0,
            status=JobStatus.FAILED,
            at=2.5,
            service="t",
            error="late",
        ),
        StatusUpdate(
            request_id=rid,
            submitted_at=1.0,
            status=JobStatus.PENDING,
            at=3.0,
            service="dlq",
            reopen=True,
        ),
        StatusUpdate(
            request_id=rid,
            submitted_at=1.0,
            status=JobStatus.PROCESSING_FEATURES,
            at=4.0,
            service="t",
        ),
    ]
    client = redis.Redis.from_url(f"{infra.redis_url}/0")
    for _ in range(2):  # live, then again as a rebuild from the status topic would
        client.delete(f"penguin12:job:{rid}")
        store = JobStore(client, retention_s=60)
        for update in history:
            store.apply(update)
        state = store.get(rid)
        assert state is not None
        assert (state.status, state.error, state.last_updated) == (
            JobStatus.PROCESSING_FEATURES,
            None,
            4.0,
        )


# ------------------------------------------------------------ re-open semantics (issue #11, 6)

_MODEL = ModelInfo(name="t", version="0123456789ab", architecture="tiny", demo=True)
_RESULT = Result(prediction="REAL", confidence=0.9, fake_probability=0.1, model=_MODEL, demo=True)


def _update(rid: str, status: JobStatus, at: float, **extra: object) -> StatusUpdate:
    if status == JobStatus.COMPLETED:
        extra.setdefault("result", _RESULT)
    return StatusUpdate(
        request_id=rid, submitted_at=extra.pop("submitted_at", 1000.0), status=status, at=at,
        service="t", **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize("skew_s", [-3.0, 3.0])
def test_reopen_then_complete_whatever_the_clock_skew(infra: Infra, skew_s: float) -> None:
    """The replayer's clock is ``skew_s`` ahead of (or behind) the workers': the new run's
    COMPLETED still counts, because order comes from the status log, not from ``at``."""
    store = JobStore(redis.Redis.from_url(f"{infra.redis_url}/0"), retention_s=60)
    rid = str(uuid.uuid4())
    worker_now = 5000.0
    applied = store.apply_many(
        [
            _update(rid, JobStatus.PENDING, 1000.0),
            _update(rid, JobStatus.FAILED, 1001.0, error="dead-lettered"),
            _update(rid, JobStatus.PENDING, worker_now + skew_s, reopen=True),
            _update(rid, JobStatus.PROCESSING_FEATURES, worker_now + 0.1),
            _update(rid, JobStatus.CLASSIFYING, worker_now + 0.2),
            _update(rid, JobStatus.COMPLETED, worker_now + 0.3),
        ]
    )
    assert applied == [True] * 6
    state = store.get(rid)
    assert state is not None and state.status == JobStatus.COMPLETED and state.error is None
    assert state.result == _RESULT and state.submitted_at == 1000.0


def test_reopen_never_moves_a_completed_job_back(infra: Infra) -> None:
    store = JobStore(redis.Redis.from_url(f"{infra.redis_url}/0"), retention_s=60)
    rid = str(uuid.uuid4())
    store.apply_many(
        [_update(rid, JobStatus.PENDING, 1000.0), _update(rid, JobStatus.COMPLETED, 1002.0)]
    )
    assert store.apply_many([_update(rid, JobStatus.PENDING, 1003.0, reopen=True)]) == [False]
    state = store.get(rid)
    assert state is not None and state.status == JobStatus.COMPLETED and state.result == _RESULT


def test_a_reopened_job_gets_a_fresh_deadline_and_a_new_webhook(infra: Infra) -> None:
    from provenance.webhooks.queue import WebhookQueue

    client = redis.Redis.from_url(f"{infra.redis_url}/0")
    store = JobStore(client, retention_s=600)
    hooks = WebhookQueue(client, store, retention_s=600)
    rid, now = str(uuid.uuid4()), time.time()
    old = now - 7200  # submitted two hours ago, past a one-hour deadline
    store.apply_many(
        [
            _update(rid, JobStatus.PENDING, old, submitted_at=old, callback_url="https://h.example/x"),
            _update(rid, JobStatus.FAILED, old + 1, submitted_at=old, error="dead-lettered"),
        ]
    )  # fmt: skip
    assert hooks.enqueue_finished([rid]) == 1  # the FAILED webhook
    assert hooks.enqueue_finished([rid]) == 0  # once
    store.apply(_update(rid, JobStatus.PENDING, now, submitted_at=old, reopen=True))
    # The deadline counts from the re-open, not from the first submission.
    assert rid not in {r for r, _ in store.overdue(now - 3600, limit=10_000)}
    assert rid in {r for r, _ in store.overdue(now + 3600, limit=10_000)}
    assert hooks.enqueue_finished([rid]) == 0  # not finished yet
    store.apply(_update(rid, JobStatus.PROCESSING_FEATURES, now + 1, submitted_at=old))
    assert rid not in {r for r, _ in store.overdue(now - 3600, limit=10_000)}
    store.apply(_update(rid, JobStatus.COMPLETED, now + 2, submitted_at=old))
    assert hooks.enqueue_finished([rid]) == 1  # the new run's final state is sent again
    assert hooks.enqueue_finished([rid]) == 0
    assert hooks.meta(rid)["state"] == "pending"
    state = store.get(rid)
    assert state is not None and state.submitted_at == old  # the job's own history is kept


# -------------------------------------------------------- state rebuild (issue #11, item 10)


def test_status_records_land_where_partition_of_says(infra: Infra) -> None:
    """The sweeper's rebuild check relies on knowing a job's status partition."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from provenance.maintenance import partition_of

    topic = f"test-partitions-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": infra.bootstrap})
    admin.create_topics([NewTopic(topic, 12, 1)])[topic].result(30)
    seen: dict[str, int] = {}
    producer = Producer({"bootstrap.servers": infra.bootstrap})
    keys = [str(uuid.uuid4()) for _ in range(60)]
    for key in keys:
        producer.produce(
            topic, b"x", key=key, on_delivery=lambda err, msg: seen.update({msg.key().decode(): msg.partition()})
        )  # fmt: skip
    assert producer.flush(30) == 0
    assert seen == {key: partition_of(key, 12) for key in keys}


def test_a_long_rebuild_carries_on_and_the_sweeper_keeps_running(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted rebuild resumes where it stopped (a rebuild longer than any timeout ends),
    and meanwhile overdue jobs whose records are all replayed are timed out; the others wait."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from penguin12.kafka import AsyncProducer, producer_config
    from provenance import maintenance
    from provenance.maintenance import Maintenance, Rebuild, partition_of
    from provenance.settings import ProvenanceSettings

    suffix = uuid.uuid4().hex[:8]
    settings = ProvenanceSettings(
        kafka_bootstrap=infra.bootstrap,
        # A database of its own: the sweeper looks at every open job in it.
        state_redis_url=f"{infra.redis_url}/7",
        topic_status=f"test-{suffix}.status",
        consumer_group=f"provenance-{suffix}",
        job_deadline_s=60,
    )
    redis.Redis.from_url(settings.state_redis_url).flushdb()
    admin = AdminClient({"bootstrap.servers": infra.bootstrap})
    admin.create_topics([NewTopic(settings.topic_status, 2, 1)])[settings.topic_status].result(30)
    old = time.time() - 3600
    ids = [str(uuid.uuid4()) for _ in range(40)]
    producer = Producer({"bootstrap.servers": infra.bootstrap})
    for rid in ids:
        pending = _update(rid, JobStatus.PENDING, old, submitted_at=old)
        producer.produce(settings.topic_status, pending.model_dump_json(exclude_none=True), key=rid)
    assert producer.flush(30) == 0
    store = JobStore(redis.Redis.from_url(settings.state_redis_url), retention_s=600)

    monkeypatch.setattr(maintenance, "REBUILD_BATCH", 5)
    rebuild = Rebuild(settings, store)
    stop = threading.Event()
    original = store.apply_many
    calls = 0

    def interrupted(updates: list[StatusUpdate]) -> list[bool]:
        nonlocal calls
        calls += 1
        if calls == 3:
            stop.set()  # the first pass ends early (as a timeout or a crash of Kafka would)
        return original(updates)

    monkeypatch.setattr(store, "apply_many", interrupted)
    first = rebuild.run(stop)
    assert 0 < first < len(ids) and not rebuild.finished
    assert rebuild.run() == len(ids)  # carried on: every record replayed once in all
    assert rebuild.finished and all(rebuild.covers(rid) for rid in ids)

    # The sweeper, while a rebuild has covered one partition but not the other.
    class HalfDone:
        def covers(self, request_id: str) -> bool:
            return partition_of(request_id, 2) == 0

    with AsyncProducer(producer_config(settings)) as out:
        sweeper = Maintenance(settings, store, out)
        sweeper._rebuild = HalfDone()  # type: ignore[assignment]
        expected = [rid for rid in ids if partition_of(rid, 2) == 0]
        assert sweeper.expire_overdue() == len(expected) > 0
    failed = _consume_statuses(infra, settings.topic_status, JobStatus.FAILED, len(expected))
    assert sorted(failed) == sorted(expected)


def _consume_statuses(infra: Infra, topic: str, status: JobStatus, count: int) -> list[str]:
    consumer = Consumer(
        {
            "bootstrap.servers": infra.bootstrap,
            "group.id": f"t-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[str] = []

    def more() -> bool:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            update = StatusUpdate.model_validate_json(message.value())
            if update.status == status:
                found.append(update.request_id)
        return len(found) >= count

    try:
        wait_for(more, 30, 0)
    finally:
        consumer.close()
    return found


# ------------------------------------------------- early records are awaited (issue #11, 12)


def test_an_unacknowledged_early_status_keeps_the_offset_unstored(infra: Infra) -> None:
    """The extractor's PROCESSING_FEATURES goes out before its batch is done; if the broker
    never acknowledges it, the worker must not store the offset (the record is redone)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from penguin12.kafka import AsyncProducer
    from penguin12.settings import CommonSettings
    from penguin12.worker import EarlyOutputs, Output, Record, StreamWorker

    suffix = uuid.uuid4().hex[:8]
    source = f"test-{suffix}.statuses"
    admin = AdminClient({"bootstrap.servers": infra.bootstrap})
    admin.create_topics([NewTopic(source, 1, 1)])[source].result(30)
    producer = Producer({"bootstrap.servers": infra.bootstrap})
    producer.produce(source, _update("r-1", JobStatus.PENDING, 1.0).model_dump_json(), key="r-1")
    assert producer.flush(30) == 0

    # Early records go through a producer whose broker is unreachable: never acknowledged.
    dead = AsyncProducer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 500})
    early = EarlyOutputs(dead)
    handled: list[str] = []

    def handle(records: list[Record[StatusUpdate]]) -> list[Output]:
        for record in records:
            handled.append(record.payload.request_id)
            early.emit(Output(source, b"started", record.payload.request_id))
        return []

    settings = CommonSettings(kafka_bootstrap=infra.bootstrap)
    group = f"early-{suffix}"
    worker = StreamWorker(
        settings=settings,
        group_id=group,
        source_topic=source,
        schema=StatusUpdate,
        handle_batch=handle,
        early=early,
        retry_backoff_s=0.2,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: len(handled) >= 2, 60, 0.1, "the record to be handled again")
    finally:
        stop.set()
        thread.join(30)
        dead.close()
    reader = Consumer({"bootstrap.servers": infra.bootstrap, "group.id": group})
    try:
        [committed] = reader.committed([TopicPartition(source, 0)], timeout=10)
    finally:
        reader.close()
    assert committed.offset < 1, "the offset was stored although the early status was lost"


def test_a_timeout_failure_that_is_not_acknowledged_is_sent_again(infra: Infra) -> None:
    """The deadline sweeper produces outside any consumer loop: it waits for the broker's
    acknowledgements, and a job whose FAILED was not acknowledged stays due for the next sweep."""
    from penguin12.kafka import AsyncProducer, DeliveryError
    from provenance.maintenance import Maintenance
    from provenance.settings import ProvenanceSettings

    settings = ProvenanceSettings(
        kafka_bootstrap="127.0.0.1:9",
        # A database no running provenance sweeps: another test's deadline sweeper on DB 0 would
        # fail this hour-old job first, and it would leave the overdue set for the wrong reason.
        state_redis_url=f"{infra.redis_url}/11",
        topic_status=f"test-{uuid.uuid4().hex[:8]}.status",
        job_deadline_s=60,
    )
    store = JobStore(redis.Redis.from_url(settings.state_redis_url), retention_s=600)
    rid, old = str(uuid.uuid4()), time.time() - 3600
    store.apply(_update(rid, JobStatus.PENDING, old, submitted_at=old))
    dead = AsyncProducer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 500})
    try:
        with pytest.raises(DeliveryError):
            Maintenance(settings, store, dead).expire_overdue()
    finally:
        dead.close(1)
    assert rid in {r for r, _ in store.overdue(time.time() - 60, limit=100_000)}
    state = store.get(rid)
    assert state is not None and state.status == JobStatus.PENDING
