"""Admission control: refuse new work quickly rather than queue it without limit or hang.

- Kafka down: answer 503 at once (after a one-second probe) instead of waiting for a delivery
  timeout, and recover by itself when the broker returns.
- Backlog too deep: the feature extractors' consumer lag on the preprocessed topic is measured
  every few seconds; above `max_backlog` new submissions get 429 with `Retry-After`.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from starlette.concurrency import run_in_threadpool

from penguin12.kafka import KafkaHealth
from penguin12.metrics import BACKLOG
from preprocessor.jobs import IdempotencyRegistry
from preprocessor.settings import PreprocessorSettings

log = logging.getLogger("penguin12.preprocessor.admission")


class BacklogMonitor:
    """Tracks queued-but-unprocessed jobs: high watermarks minus the group's committed offsets."""

    def __init__(self, settings: PreprocessorSettings, health: KafkaHealth):
        self._settings = settings
        self._health = health
        self._admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backlog-monitor", daemon=True)
        self.backlog = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def overloaded(self) -> bool:
        limit = self._settings.max_backlog
        return limit > 0 and self.backlog > limit

    def _run(self) -> None:
        was_up = True
        while not self._stop.is_set():
            up = self._health.up
            # No admin requests in flight while the broker is away or just back: librdkafka has
            # aborted on admin-request timeouts racing a reconnect (see the README's known issues).
            if not (up and was_up):
                was_up = up
                self._stop.wait(self._settings.backlog_check_interval_s)
                continue
            try:
                self.backlog = self.measure()
                BACKLOG.labels(topic=self._settings.topic_preprocessed).set(self.backlog)
            except (KafkaException, ValueError) as exc:
                log.debug("backlog not measured: %s", exc)
            self._stop.wait(self._settings.backlog_check_interval_s)

    def measure(self, timeout: float = 5.0) -> int:
        topic = self._settings.topic_preprocessed
        metadata = self._admin.list_topics(topic, timeout=timeout).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        if not partitions:
            return 0
        latest = self._admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in partitions}, request_timeout=timeout
        )
        earliest = self._admin.list_offsets(
            {tp: OffsetSpec.earliest() for tp in partitions}, request_timeout=timeout
        )
        group = ConsumerGroupTopicPartitions(self._settings.feature_extractor_group, partitions)
        committed_future = self._admin.list_consumer_group_offsets([group], request_timeout=timeout)
        committed = {
            tp.partition: tp.offset
            for tp in committed_future[self._settings.feature_extractor_group]
            .result(timeout)
            .topic_partitions
        }
        total = 0
        for tp in partitions:
            high = latest[tp].result(timeout).offset
            low = earliest[tp].result(timeout).offset
            done = committed.get(tp.partition, -1)
            total += max(0, high - max(done, low))
        return total


class Admission:
    """What decides, before any work, whether a submission is taken: backlog and idempotency."""

    def __init__(self, backlog: BacklogMonitor, idempotency: IdempotencyRegistry):
        self.backlog = backlog
        self._idempotency = idempotency

    async def replay(self, client: str, key: str) -> str | None:
        return await run_in_threadpool(self._idempotency.lookup, client, key)

    async def claim(self, client: str, key: str, request_id: str) -> str:
        return await run_in_threadpool(self._idempotency.claim, client, key, request_id)

    async def release(self, client: str, key: str) -> None:
        await run_in_threadpool(self._idempotency.release, client, key)
