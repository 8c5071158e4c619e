"""Reading the dead-letter topic: every record, or the last N of each partition, decoded."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from penguin12 import deadletter
from penguin12.kafka import consumer_config
from penguin12_ops.dlq.replay_log import partitions, read_replay_log
from penguin12_ops.dlq.settings import DlqSettings


@dataclass
class DeadLetter:
    """One dead-lettered record, decoded for people and for the replayer."""

    partition: int
    offset: int
    timestamp_ms: int
    reason: str
    service: str
    source: str
    request_id: str | None
    value_bytes: int
    replayed: bool = False
    key: bytes | None = field(default=None, repr=False)
    value: bytes = field(default=b"", repr=False)
    headers: list[tuple[str, bytes]] = field(default_factory=list, repr=False)

    @property
    def truncated(self) -> bool:
        return any(name == deadletter.TRUNCATED for name, _ in self.headers)

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.timestamp_ms / 1000)

    def source_topic(self) -> str | None:
        """The topic the record was consumed from, or None when the header is unreadable."""
        topic, sep, _rest = self.source.partition(":")
        # Kafka topic names are [a-zA-Z0-9._-]: no colon, so the first field is the topic.
        return topic if sep and re.fullmatch(r"[A-Za-z0-9._-]+", topic) else None

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        for private in ("key", "value", "headers"):
            out.pop(private)
        out["age_s"] = round(self.age_s, 1)
        return out


def read_dead_letters(
    settings: DlqSettings, *, last: int | None = None, timeout: float = 10.0
) -> Iterator[DeadLetter]:
    """Every record now in the dead-letter topic (or the ``last`` N of each partition), in order."""
    # A throw-away group: reading assigns partitions by hand and commits nothing.
    group = f"penguin12-dlq-reader-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(consumer_config(settings, group, {"enable.partition.eof": True}))
    try:
        topic = settings.topic_dead_letter
        assignments = []
        ends: dict[int, int] = {}
        for partition in partitions(consumer, topic, timeout):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            if high <= low:
                continue
            start = low if last is None else max(low, high - last)
            ends[partition] = high
            assignments.append(TopicPartition(topic, partition, start or OFFSET_BEGINNING))
        if not assignments:
            return
        consumer.assign(assignments)
        deadline = time.monotonic() + timeout
        while ends:
            message = consumer.poll(0.5)
            if message is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"reading {topic} timed out; still waiting on partitions {sorted(ends)}"
                    )
                continue
            err = message.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(message.partition() or 0, None)
                    continue
                raise KafkaException(err)
            deadline = time.monotonic() + timeout
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset >= ends.get(partition, -1):
                ends.pop(partition, None)
                continue
            if offset == ends[partition] - 1:
                ends.pop(partition)
            yield _decode(message)
    finally:
        consumer.close()


def _decode(message: Any) -> DeadLetter:
    headers = [(k, v or b"") for k, v in (message.headers() or [])]
    named = {k: v.decode("utf-8", "replace") for k, v in headers}
    key: bytes | None = message.key()
    value: bytes = message.value() or b""
    request_id = key.decode("utf-8", "replace") if key else None
    return DeadLetter(
        partition=message.partition(),
        offset=message.offset(),
        timestamp_ms=message.timestamp()[1],
        reason=named.get(deadletter.REASON, "(no reason header)"),
        service=named.get(deadletter.SERVICE, "?"),
        source=named.get(deadletter.SOURCE, "?"),
        request_id=request_id,
        value_bytes=len(value),
        key=key,
        value=value,
        headers=headers,
    )


def list_dead_letters(settings: DlqSettings, limit: int | None = 50) -> list[DeadLetter]:
    """The most recent dead letters, oldest first, each marked replayed or not."""
    log = read_replay_log(settings)
    records = list(read_dead_letters(settings, last=limit))
    for record in records:
        record.replayed = log.replayed(record.partition, record.offset)
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return records[-limit:] if limit else records
