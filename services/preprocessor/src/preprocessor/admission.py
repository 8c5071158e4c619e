"""Admission control: refuse new work quickly rather than queue it without limit or hang.

- Kafka down: answer 503 at once (after a one-second probe) instead of waiting for a delivery
  timeout, and recover by itself when the broker returns.
- Backlog too deep: the feature extractors' consumer lag on the preprocessed topic is measured
  every few seconds; above `max_backlog` new submissions get 429 with `Retry-After`.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition
from starlette.concurrency import run_in_threadpool

from penguin12.kafka import KafkaHealth, consumer_config
from penguin12.metrics import BACKLOG
from preprocessor.jobs import IdempotencyRegistry
from preprocessor.settings import PreprocessorSettings

log = logging.getLogger("penguin12.preprocessor.admission")


class BacklogMonitor:
    """Tracks queued-but-unprocessed jobs: high watermarks minus the group's committed offsets.

    It reads them with a plain consumer that never subscribes (so it never joins the group),
    not with the admin API: librdkafka's admin ListConsumerGroupOffsets can abort the whole
    process when a broker connection drops mid-request (`rd_kafka_enq_once_del_source_return`,
    confluentinc/librdkafka#4605), which the Kafka-outage test hit in CI.
    """

    def __init__(self, settings: PreprocessorSettings, health: KafkaHealth):
        self._settings = settings
        self._health = health
        self._consumer: Consumer | None = None
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
        try:
            while not self._stop.is_set():
                if self._health.up:
                    try:
                        self.backlog = self.measure()
                        BACKLOG.labels(topic=self._settings.topic_preprocessed).set(self.backlog)
                    except (KafkaException, ValueError, KeyError) as exc:
                        log.debug("backlog not measured: %s", exc)
                self._stop.wait(self._settings.backlog_check_interval_s)
        finally:
            if self._consumer is not None:
                self._consumer.close()

    def _lag_reader(self) -> Consumer:
        if self._consumer is None:
            # The feature extractors' group, read only: no subscribe, no commits.
            self._consumer = Consumer(
                consumer_config(
                    self._settings,
                    self._settings.feature_extractor_group,
                    {"client.id": f"{self._settings.service_name}-backlog"},
                )
            )
        return self._consumer

    def measure(self, timeout: float = 5.0) -> int:
        consumer = self._lag_reader()
        topic = self._settings.topic_preprocessed
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        if not partitions:
            return 0
        committed = {
            tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=timeout)
        }
        total = 0
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            done = committed.get(tp.partition, -1)
            total += max(0, high - max(done, low))
        return total


class Admission:
    """What decides, before any work, whether a submission is taken: backlog and idempotency."""

    def __init__(self, backlog: BacklogMonitor, idempotency: IdempotencyRegistry):
        self.backlog = backlog
        self._idempotency = idempotency

    async def lookup(self, client: str, key: str) -> str | None:
        """The request id an earlier submission with this key was queued under (a repeat)."""
        return await run_in_threadpool(self._idempotency.lookup, client, key)

    async def claim(self, client: str, key: str, request_id: str) -> str:
        return await run_in_threadpool(self._idempotency.claim, client, key, request_id)

    async def confirm(self, client: str, key: str, request_id: str) -> bool:
        return await run_in_threadpool(self._idempotency.confirm, client, key, request_id)

    async def release(self, client: str, key: str, request_id: str) -> None:
        await run_in_threadpool(self._idempotency.release, client, key, request_id)
