"""Which dead letters were replayed, kept in a Kafka consumer group of the replayer's own.

Per partition, the committed offset is the first offset *not* replayed, and the commit's metadata
lists the replayed offsets above it as ranges (a filter may replay records out of order).

Caveat: Kafka forgets a consumer group's offsets ``offsets.retention.minutes`` (7 days by default)
after the group was last used; the replay log lives only that long after the last replay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from penguin12.kafka import consumer_config
from penguin12_ops.dlq.settings import DlqSettings

# Kafka's default offset.metadata.max.bytes is 4096.
_MAX_METADATA = 4000


def _decode_ranges(metadata: str | None) -> list[tuple[int, int]]:
    if not metadata:
        return []
    try:
        data = json.loads(metadata)
        return [(int(a), int(b)) for a, b in data.get("replayed", [])]
    except (ValueError, TypeError, AttributeError):
        return []


def _encode(offsets: set[int], floor: int) -> tuple[int, str]:
    """(first offset not replayed, JSON ranges of the replayed offsets above it)."""
    committed = floor
    while committed in offsets:
        committed += 1
    ranges: list[list[int]] = []
    for offset in sorted(o for o in offsets if o > committed):
        if ranges and ranges[-1][1] == offset - 1:
            ranges[-1][1] = offset
        else:
            ranges.append([offset, offset])
    metadata = json.dumps({"replayed": ranges}, separators=(",", ":"))
    if len(metadata) > _MAX_METADATA:
        raise RuntimeError(
            f"the replay log has {len(ranges)} gaps and no longer fits a Kafka commit; "
            "replay the older records (or skip them with a wider filter) first"
        )
    return committed, metadata


@dataclass
class ReplayLog:
    """Which offsets of each dead-letter partition were replayed (see module docstring)."""

    floors: dict[int, int]
    above: dict[int, set[int]]

    def replayed(self, partition: int, offset: int) -> bool:
        return offset < self.floors.get(partition, 0) or offset in self.above.get(partition, set())

    def add(self, partition: int, offset: int) -> None:
        self.above.setdefault(partition, set()).add(offset)

    def commits(self, topic: str) -> list[TopicPartition]:
        out = []
        for partition, offsets in self.above.items():
            committed, metadata = _encode(offsets, self.floors.get(partition, 0))
            out.append(TopicPartition(topic, partition, committed, metadata=metadata))
        return out


def partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    """The topic's partition numbers; none when it does not exist (yet)."""
    metadata = consumer.list_topics(topic, timeout=timeout)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        return []
    return sorted(info.partitions)


def read_replay_log(settings: DlqSettings, timeout: float = 10.0) -> ReplayLog:
    consumer = Consumer(consumer_config(settings, settings.dlq_replayer_group))
    try:
        topic = settings.topic_dead_letter
        parts = [TopicPartition(topic, p) for p in partitions(consumer, topic, timeout)]
        floors: dict[int, int] = {}
        above: dict[int, set[int]] = {}
        for tp in consumer.committed(parts, timeout=timeout) if parts else []:
            if tp.offset >= 0:
                floors[tp.partition] = tp.offset
            ranges = _decode_ranges(getattr(tp, "metadata", None))
            above[tp.partition] = {o for a, b in ranges for o in range(a, b + 1)}
        return ReplayLog(floors, above)
    finally:
        consumer.close()


def commit_replay_log(settings: DlqSettings, log: ReplayLog) -> None:
    """Record ``log`` in the replayer's group (synchronously: a failure is reported)."""
    consumer = Consumer(consumer_config(settings, settings.dlq_replayer_group))
    try:
        results = consumer.commit(
            offsets=log.commits(settings.topic_dead_letter), asynchronous=False
        )
        failed = [tp for tp in results or [] if tp.error is not None]
        if failed:
            raise RuntimeError(f"could not record the replay: {failed}")
    finally:
        consumer.close()
