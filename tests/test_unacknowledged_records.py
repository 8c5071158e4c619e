"""Records the broker never acknowledged are produced again: a worker's early status keeps its
offset unstored, the sweeper's timeout failure stays due (issue #11, item 12)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from support.statuses import status_update

from conftest import Infra, wait_for
from penguin12.schemas import JobStatus, StatusUpdate
from penguin12.state import JobStore


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
    producer.produce(
        source, status_update("r-1", JobStatus.PENDING, 1.0).model_dump_json(), key="r-1"
    )
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
    store.apply(status_update(rid, JobStatus.PENDING, old, submitted_at=old))
    dead = AsyncProducer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 500})
    try:
        with pytest.raises(DeliveryError):
            Maintenance(settings, store, dead).expire_overdue()
    finally:
        dead.close(1)
    assert rid in {r for r, _ in store.overdue(time.time() - 60, limit=100_000)}
    state = store.get(rid)
    assert state is not None and state.status == JobStatus.PENDING
