"""At-least-once under crashes, poison messages, scale-out, and state that never moves back."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import Infra, Stack, wait_for
from penguin12.schemas import JobStatus, ModelInfo, Result, StatusUpdate
from penguin12.state import JobStore


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


def test_readiness_reflects_dependencies(stack: Stack) -> None:
    body = httpx.get(stack.url("preprocessor", "/readyz"), timeout=5).json()
    assert body == {"kafka": "ok", "redis": "ok"}
    wait_for(
        lambda: httpx.get(stack.url("provenance", "/readyz"), timeout=5).status_code == 200, 10
    )


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
    from provenance.webhooks import WebhookQueue

    client = redis.Redis.from_url(f"{infra.redis_url}/0")
    store, hooks = JobStore(client, retention_s=600), WebhookQueue(client, retention_s=600)
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
        state_redis_url=f"{infra.redis_url}/0",
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
