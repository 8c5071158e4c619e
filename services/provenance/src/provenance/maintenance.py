"""Keeping job state honest: deadlines, and rebuilding state that Redis lost.

- Deadlines: a job still open `job_deadline_s` after submission gets a FAILED status record
  (published to the status topic like any other update, so the log stays the source of truth).
- Rebuild: the status topic holds every update for `status_retention_ms`. If Redis loses job
  state (`JobStore.is_complete` turns false: a flush, a new empty Redis), the status log is
  re-read from the start into Redis, in a thread of its own that carries on after an interruption
  (never restarts from the beginning), while the deadline sweeper keeps running for the jobs
  already re-read. Re-reading is always safe: updates are applied monotonically and idempotently.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from penguin12 import schemas
from penguin12.kafka import AsyncProducer, DeliveryError, consumer_config
from penguin12.schemas import JobStatus, StatusUpdate
from penguin12.state import JobStore, is_final
from penguin12.worker import deliver, status_output
from provenance.settings import ProvenanceSettings

log = logging.getLogger("penguin12.provenance.maintenance")

# Status records re-read per Redis round trip when job state is rebuilt.
REBUILD_BATCH = 500


def partition_of(key: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``: CRC-32 of the key)
    gives a keyed record: where a job's status records are."""
    return zlib.crc32(key.encode()) % partitions


class Rebuild:
    """Re-reads the status log, from its start up to its end when the rebuild began, into Redis.

    It remembers how far each partition got, so after a failure (or a stall: no record for
    `stall_s`) `run` carries on from there instead of starting again: a long rebuild finishes. It
    tells the deadline sweeper which partitions are complete (`covers`).
    """

    def __init__(self, settings: ProvenanceSettings, store: JobStore, stall_s: float = 120.0):
        self._settings = settings
        self._store = store
        self._stall_s = stall_s
        self._ends: dict[int, int] | None = None
        self._next: dict[int, int] = {}
        self.partitions = 0
        self.reread = 0
        self.applied = 0

    @property
    def finished(self) -> bool:
        return self._ends is not None and all(
            self._next.get(p, 0) >= end for p, end in self._ends.items()
        )

    def covers(self, request_id: str) -> bool:
        """True once every status record of this job from before the rebuild is applied."""
        if self._ends is None or not self.partitions:
            return False
        p = partition_of(request_id, self.partitions)
        return self._next.get(p, 0) >= self._ends.get(p, 0)

    def run(self, stop: threading.Event | None = None) -> int:
        """Re-read until done (or until ``stop``); returns the records re-read in all."""
        topic = self._settings.topic_status
        consumer = Consumer(
            consumer_config(
                self._settings,
                f"{self._settings.consumer_group}-rebuild",
                {"enable.partition.eof": True},
            )
        )
        try:
            if self._ends is None:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                ends = {
                    p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in partitions
                }
                self.partitions = len(partitions)
                self._ends = ends
            todo = {p for p, end in self._ends.items() if self._next.get(p, 0) < end}
            consumer.assign(
                [TopicPartition(topic, p, self._next.get(p, OFFSET_BEGINNING)) for p in todo]
            )
            progress_at = time.monotonic()
            while todo and not (stop is not None and stop.is_set()):
                updates: list[StatusUpdate] = []
                positions: dict[int, int] = {}
                for message in consumer.consume(REBUILD_BATCH, 1.0):
                    partition = message.partition() or 0
                    if message.error() is None:
                        # A poison record was dead-lettered by the live consumer already.
                        with contextlib.suppress(schemas.PoisonMessage):
                            updates.append(schemas.decode(StatusUpdate, message.value()))
                        positions[partition] = (message.offset() or 0) + 1
                    else:  # end of partition
                        positions[partition] = self._ends.get(partition, 0)
                # In order, one Redis round trip per batch (as the live consumer records them);
                # progress is remembered only once the batch is applied.
                self.applied += sum(self._store.apply_many(updates))
                self.reread += len(updates)
                for partition, position in positions.items():
                    self._next[partition] = max(self._next.get(partition, 0), position)
                    if self._next[partition] >= self._ends.get(partition, 0):
                        todo.discard(partition)
                if positions:
                    progress_at = time.monotonic()
                elif time.monotonic() - progress_at > self._stall_s:
                    raise TimeoutError(
                        f"rebuild made no progress for {self._stall_s:.0f} s on partitions "
                        f"{sorted(todo)}; it will carry on from where it stopped"
                    )
            if not todo:
                log.info(
                    "rebuilt job state from %s: %d records re-read, %d applied",
                    topic,
                    self.reread,
                    self.applied,
                )
            return self.reread
        finally:
            consumer.close()


def rebuild_state(settings: ProvenanceSettings, store: JobStore) -> int:
    """Re-read the status log from its start up to its current end into Redis; returns records."""
    rebuild = Rebuild(settings, store)
    while True:
        try:
            return rebuild.run()
        except (KafkaException, redis.RedisError, TimeoutError) as exc:
            log.warning("rebuild interrupted (%s); carrying on", exc)
            time.sleep(2.0)


class Maintenance:
    """Times out overdue jobs (a daemon thread) and rebuilds lost state (another one), so the
    deadline sweeper keeps running however long a rebuild takes."""

    def __init__(self, settings: ProvenanceSettings, store: JobStore, producer: AsyncProducer):
        self._settings = settings
        self._store = store
        self._producer = producer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)
        self._rebuild: Rebuild | None = None
        self._rebuild_thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._rebuild_thread is not None:
            self._rebuild_thread.join(timeout=10)

    @property
    def rebuilding(self) -> Rebuild | None:
        """The rebuild in progress, if any."""
        return self._rebuild

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.ensure_state()
            except (redis.RedisError, KafkaException) as exc:
                log.warning("state check postponed: %s", exc)
            try:
                self.expire_overdue()
            except (redis.RedisError, KafkaException, DeliveryError) as exc:
                log.warning("deadline sweep postponed: %s", exc)
            self._stop.wait(self._settings.maintenance_interval_s)

    def ensure_state(self) -> None:
        """Start a rebuild (in its own thread) when the state is not known to be complete."""
        if self._rebuild is not None or self._store.is_complete(self._settings.topic_status):
            return
        log.warning("job state marker missing: rebuilding state from the status topic")
        self._rebuild = Rebuild(self._settings, self._store)
        self._rebuild_thread = threading.Thread(
            target=self._run_rebuild, args=(self._rebuild,), name="rebuild", daemon=True
        )
        self._rebuild_thread.start()

    def _run_rebuild(self, rebuild: Rebuild) -> None:
        while not self._stop.is_set():
            try:
                rebuild.run(self._stop)
            except (KafkaException, redis.RedisError, TimeoutError) as exc:
                log.warning("rebuild interrupted (%s); carrying on from where it stopped", exc)
                self._stop.wait(2.0)
                continue
            if rebuild.finished:
                try:
                    self._store.mark_complete(self._settings.topic_status)
                except redis.RedisError as exc:
                    log.warning("rebuild done but its marker was not written: %s", exc)
                    self._stop.wait(2.0)
                    continue
                self._rebuild = None
            return

    def expire_overdue(self) -> int:
        """FAIL the jobs past their deadline (counted from submission, or from a re-open).

        During a rebuild, a job whose status records are not all re-read yet is left for later:
        its COMPLETED may be on the way. The FAILED records are produced and acknowledged here;
        one that is not stays in the open-jobs index and is produced again next time.
        """
        deadline_s = self._settings.job_deadline_s
        overdue = self._store.overdue(time.time() - deadline_s)
        rebuild = self._rebuild
        outputs = []
        for request_id, _since in overdue:
            if rebuild is not None and not rebuild.covers(request_id):
                continue
            state = self._store.get(request_id)
            if state is None or is_final(state.status):
                self._store.forget_open(request_id)
                continue
            update = StatusUpdate(
                request_id=request_id,
                submitted_at=state.submitted_at,
                status=JobStatus.FAILED,
                service=self._settings.service_name,
                error=f"timed out: no result within {deadline_s:.0f} s of submission "
                f"(last status {state.status.value})",
            )
            outputs.append(status_output(self._settings, update))
        if outputs:
            deliver(self._producer, outputs, timeout_s=30.0)
            log.warning("%d overdue jobs marked FAILED (timeout)", len(outputs))
        return len(outputs)
