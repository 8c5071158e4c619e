"""Read-only looks at the stack a scenario needs: a job's status, the Kafka layout, the DLQ end."""

from __future__ import annotations

import time
from typing import Any

import httpx

from chaos.config import PROVENANCE
from chaos.tracking import is_terminal


def status_of(client: httpx.Client, request_id: str) -> str | None:
    """A job's status through the public API; None for a 404 or no answer."""
    try:
        response = client.get(f"{PROVENANCE}/v1/status/{request_id}", timeout=5)
    except httpx.HTTPError:
        return None
    return str(response.json()["status"]) if response.status_code == 200 else None


def final_states(
    client: httpx.Client, request_ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """The status bodies of these jobs, waiting up to ``timeout`` in all for them to be final."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for request_id in request_ids:
            if request_id in found and is_terminal(found[request_id].get("status")):
                continue
            try:
                response = client.get(f"{PROVENANCE}/v1/status/{request_id}", timeout=5)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                found[request_id] = response.json()
        done = all(is_terminal(found.get(r, {}).get("status")) for r in request_ids)
        if done or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def dead_letter_end(settings: Any) -> dict[int, int]:
    """The dead-letter topic's end offset per partition (what is there before a scenario)."""
    from confluent_kafka import Consumer, TopicPartition

    from penguin12.kafka import consumer_config

    consumer = Consumer(consumer_config(settings, "chaos-probe"))
    try:
        topic = settings.topic_dead_letter
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        parts = sorted(metadata.partitions) if metadata and not metadata.error else []
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
    finally:
        consumer.close()


def partition_layout(settings: Any, topics: list[str] | None = None) -> dict[Any, Any]:
    """(topic, partition) -> (leader, ISR) for ``topics`` (all topics, internal ones too: None)."""
    from confluent_kafka.admin import AdminClient

    from penguin12.kafka import client_config

    metadata = AdminClient(client_config(settings)).list_topics(timeout=10)
    names = topics if topics is not None else list(metadata.topics)
    return {
        (name, p): (part.leader, list(part.isrs))
        for name in names
        if name in metadata.topics
        for p, part in metadata.topics[name].partitions.items()
    }
