"""The dead-letter record format: what the worker loop writes, what the operator tool reads back.

A dead letter keeps the original record's value (truncated past `MAX_VALUE_BYTES`, with the
original's size and sha256 in headers), its key (the job's request id when it could be read) and
these headers, read back by `penguin12_ops.dlq` (``penguin12-dlq list``/``replay``).
"""

from __future__ import annotations

import hashlib

from confluent_kafka import Message

REASON = "penguin12.dlq.reason"
SERVICE = "penguin12.dlq.service"
# "topic:partition:offset" of the original record.
SOURCE = "penguin12.dlq.source"
# Present when the value was cut to `MAX_VALUE_BYTES`: the original's size, then its sha256.
TRUNCATED = "penguin12.dlq.truncated"
SHA256 = "penguin12.dlq.sha256"
# Set by a replay on the re-produced record: "<dead-letter topic>:<partition>:<offset>".
REPLAY_OF = "penguin12.replay.of"
# A dead letter keeps at most this much of the original value, so it always fits the topic.
MAX_VALUE_BYTES = 256 * 1024


def encode(message: Message, reason: str, service: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The dead letter's value and its dead-letter headers, for the record ``message``."""
    value = message.value() or b""
    headers = [
        (REASON, reason.encode()),
        (SERVICE, service.encode()),
        (SOURCE, f"{message.topic()}:{message.partition()}:{message.offset()}".encode()),
    ]
    if len(value) > MAX_VALUE_BYTES:
        headers += [
            (TRUNCATED, str(len(value)).encode()),
            (SHA256, hashlib.sha256(value).hexdigest().encode()),
        ]
        value = value[:MAX_VALUE_BYTES]
    return value, headers
