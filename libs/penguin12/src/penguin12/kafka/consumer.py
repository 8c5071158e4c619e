"""The worker loop's group consumer: cooperative rebalancing, fast failover, lag metrics."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from penguin12.kafka.config import MAX_RECORD_BYTES, consumer_config
from penguin12.metrics import ASSIGNED_PARTITIONS, CONSUMER_LAG
from penguin12.settings import CommonSettings

log = logging.getLogger(__name__)


def worker_consumer_config(settings: CommonSettings, group_id: str) -> dict[str, Any]:
    """`consumer_config` plus what a long-running worker in a scaled group needs."""
    return consumer_config(
        settings,
        group_id,
        {
            # Offsets are committed in the background, but only those we stored explicitly.
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "partition.assignment.strategy": "cooperative-sticky",
            # A killed worker's partitions move to the survivors within seconds.
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1500,
            "statistics.interval.ms": 5000,
            "stats_cb": _record_consumer_lag,
            "max.partition.fetch.bytes": 4 * MAX_RECORD_BYTES,
            "fetch.min.bytes": settings.kafka_fetch_min_bytes,
            "fetch.wait.max.ms": settings.kafka_fetch_wait_max_ms,
            # Pre-fetch at most ~16 MB (a full batch is 16 x 0.2 MB): a deep backlog stays in
            # Kafka, not in the worker's memory (librdkafka's default, 64 MB, showed up as RSS
            # growth).
            "queued.max.messages.kbytes": 16384,
        },
    )


def _record_consumer_lag(stats_json: str) -> None:
    """Export per-partition lag from librdkafka's statistics (no extra broker round-trips)."""
    try:
        stats = json.loads(stats_json)
        for topic, tstats in stats.get("topics", {}).items():
            for partition, pstats in tstats.get("partitions", {}).items():
                lag = pstats.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    CONSUMER_LAG.labels(topic=topic, partition=partition).set(lag)
    except (ValueError, AttributeError):
        log.debug("unreadable librdkafka statistics", exc_info=True)


def new_consumer(settings: CommonSettings, group_id: str, topics: list[str]) -> Consumer:
    """A worker's consumer, subscribed to ``topics``, keeping the partition gauges current."""
    consumer = Consumer(worker_consumer_config(settings, group_id))
    owned: set[tuple[str, int]] = set()

    def publish() -> None:
        for topic in topics:
            ASSIGNED_PARTITIONS.labels(topic=topic).set(sum(1 for t, _ in owned if t == topic))

    def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
        owned.update((tp.topic, tp.partition) for tp in partitions)
        publish()
        log.info("assigned %d partition(s), %d owned now", len(partitions), len(owned))

    def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            owned.discard((tp.topic, tp.partition))
            # A partition that moved elsewhere is no longer this replica's lag to report.
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        publish()
        log.info("revoked %d partition(s), %d owned now", len(partitions), len(owned))

    publish()
    consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    return consumer
