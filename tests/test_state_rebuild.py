"""The state rebuild from the status log carries on when interrupted, and the deadline sweeper
works beside it (issue #11, item 10)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from confluent_kafka import Consumer, Producer
from support.statuses import status_update

from conftest import Infra, wait_for
from penguin12.schemas import JobStatus, StatusUpdate
from penguin12.state import JobStore


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
        pending = status_update(rid, JobStatus.PENDING, old, submitted_at=old)
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
