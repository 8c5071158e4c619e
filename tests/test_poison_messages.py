"""Poison records (not JSON, wrong schema, oversized) are dead-lettered and fail their job,
and the consumers carry on."""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Consumer, Producer

from conftest import Infra, Stack


def _dead_letters(
    infra: Infra, topic: str, expected: int, timeout: float = 30
) -> list[dict[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": infra.bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append({k: (v or b"").decode() for k, v in message.headers() or []})
    finally:
        consumer.close()
    return found


def test_poison_messages_are_dead_lettered_and_fail_their_job(
    stack: Stack, infra: Infra, photos: dict[str, bytes]
) -> None:
    wrong_version = str(uuid.uuid4())
    missing_fields = str(uuid.uuid4())
    bad_status = str(uuid.uuid4())
    poison = [
        (stack.topic("preprocessed"), b"\x00\xffnot json at all"),
        (
            stack.topic("preprocessed"),
            json.dumps(
                {"schema_version": 99, "request_id": wrong_version, "submitted_at": 1.0}
            ).encode(),
        ),
        (
            stack.topic("features"),
            json.dumps(
                {"schema_version": 1, "request_id": missing_fields, "submitted_at": 1.0}
            ).encode(),
        ),
        (
            stack.topic("status"),
            json.dumps(
                {
                    "schema_version": 1,
                    "request_id": bad_status,
                    "submitted_at": 1.0,
                    "status": "EXPLODED",
                    "service": "x",
                }
            ).encode(),
        ),
        (stack.topic("status"), b"[1, 2, 3]"),
        # Over the 1 MB record limit, yet past the broker: it compresses to almost nothing.
    ]
    oversized_id = str(uuid.uuid4())
    producer = Producer(
        {
            "bootstrap.servers": infra.bootstrap,
            "compression.type": "lz4",
            "message.max.bytes": 3_000_000,
        }
    )
    for topic, value in poison:
        producer.produce(topic, value)
    producer.produce(stack.topic("preprocessed"), b"{" + b" " * 2_000_000 + b"}", key=oversized_id)
    assert producer.flush(10) == 0

    dead = _dead_letters(infra, stack.topic("dead-letter"), len(poison) + 1)
    assert len(dead) == len(poison) + 1
    reasons = " | ".join(d["penguin12.dlq.reason"] for d in dead)
    assert "not valid JSON" in reasons
    assert "unsupported schema_version" in reasons
    assert "invalid FeaturesMessage" in reasons
    assert "invalid StatusUpdate: status" in reasons
    assert "over the 1,000,000-byte limit" in reasons
    oversized = next(d for d in dead if "byte limit" in d["penguin12.dlq.reason"])
    assert oversized["penguin12.dlq.truncated"] == "2000002"

    for request_id, phrase in (
        (wrong_version, "unsupported schema_version"),
        (missing_fields, "invalid FeaturesMessage"),
        (bad_status, "invalid StatusUpdate"),
        (oversized_id, "over the 1,000,000-byte limit"),
    ):
        final = stack.wait_final(request_id)
        assert final["status"] == "FAILED"
        assert phrase in final["error"]

    # The consumers are still alive and working.
    assert (
        stack.wait_final(stack.submit(photos["chelsea.jpg"]).json()["request_id"])["status"]
        == "COMPLETED"
    )
