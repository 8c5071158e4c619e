"""Keeping job state honest: deadlines, and rebuilding state that Redis lost.

- Deadlines: a job still open `job_deadline_s` after submission gets a FAILED status record
  (published to the status topic like any other update, so the log stays the source of truth).
- Rebuild: the status topic holds every update for `status_retention_ms`. If Redis loses job
  state (a marker key disappears: a flush, a new empty Redis), the topic is replayed from the start
  into Redis. Replaying is always safe: updates are applied monotonically and idempotently.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from penguin12 import schemas
from penguin12.kafka import AsyncProducer, client_config
from penguin12.schemas import JobStatus, StatusUpdate
from penguin12.state import JobStore
from penguin12.worker import status_output
from provenance.settings import ProvenanceSettings

log = logging.getLogger("penguin12.provenance.maintenance")

# Status records replayed per Redis round trip when job state is rebuilt.
REBUILD_BATCH = 500


def rebuild_state(settings: ProvenanceSettings, store: JobStore, timeout_s: float = 600.0) -> int:
    """Replay the status topic from its start up to its current end into Redis; returns records."""
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"{settings.consumer_group}-rebuild",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        topic = settings.topic_status
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        applied = replayed = 0
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            updates: list[StatusUpdate] = []
            for message in consumer.consume(REBUILD_BATCH, 1.0):
                partition = message.partition()
                if message.error() is None:
                    # A poison record was dead-lettered by the live consumer already.
                    with contextlib.suppress(schemas.PoisonMessage):
                        updates.append(schemas.decode(StatusUpdate, message.value()))
                    done = (message.offset() or 0) + 1 >= ends[partition]
                else:
                    done = True  # end of partition
                if done:
                    todo.discard(partition)
            # In order, one Redis round trip per batch (as the live consumer records them).
            replayed += len(updates)
            applied += sum(store.apply_many(updates))
        if todo:
            raise TimeoutError(f"rebuild did not reach the end of partitions {sorted(todo)}")
        log.info(
            "rebuilt job state from %s: %d records replayed, %d applied", topic, replayed, applied
        )
        return replayed
    finally:
        consumer.close()


class Maintenance:
    """A daemon thread: times out overdue jobs, rebuilds lost state."""

    def __init__(self, settings: ProvenanceSettings, store: JobStore, producer: AsyncProducer):
        self._settings = settings
        self._store = store
        self._producer = producer
        self._marker = f"state-complete:{settings.topic_status}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.ensure_state()
                self.expire_overdue()
            except (redis.RedisError, KafkaException, TimeoutError) as exc:
                log.warning("maintenance postponed: %s", exc)
            self._stop.wait(self._settings.maintenance_interval_s)

    def ensure_state(self) -> None:
        if self._store.has_marker(self._marker):
            return
        log.warning("job state marker missing: rebuilding state from the status topic")
        rebuild_state(self._settings, self._store)
        self._store.set_marker(self._marker, repr(time.time()))

    def expire_overdue(self) -> int:
        deadline_s = self._settings.job_deadline_s
        overdue = self._store.overdue(time.time() - deadline_s)
        for request_id, submitted_at in overdue:
            state = self._store.get(request_id)
            if state is None or state.status in schemas.TERMINAL_STATUSES:
                self._store.forget_open(request_id)
                continue
            update = StatusUpdate(
                request_id=request_id,
                submitted_at=submitted_at,
                status=JobStatus.FAILED,
                service=self._settings.service_name,
                error=f"timed out: no result within {deadline_s:.0f} s of submission "
                f"(last status {state.status.value})",
            )
            out = status_output(self._settings, update)
            self._producer.produce(out.topic, out.value, key=out.key, headers=out.headers)
        if overdue:
            self._producer.flush(10)
            log.warning("%d overdue jobs marked FAILED (timeout)", len(overdue))
        return len(overdue)
