"""poison: records no producer of ours would write, straight into every topic, under load.

Garbage, wrong schema versions, missing fields and ~2 MB records: the consumers must carry on,
the dead-letter topic must get each one with a reason, and a job whose id is readable must end
FAILED with that reason.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from chaos.harness import Context, Outcome, under_load, wait_until
from chaos.probes import dead_letter_end, final_states


@dataclass
class Poison:
    topic_key: str  # preprocessed / features / status / dead_letter
    kind: str
    value: bytes | None
    request_id: str | None = None
    expect_reason: str | None = None
    compression: str = "none"
    outcome: str = ""  # filled in: "produced", "refused by broker: ..."
    source: str | None = None  # "topic:partition:offset" once produced


def _poison_set() -> list[Poison]:
    now = time.time()

    def rid() -> str:
        return f"chaos-poison-{uuid.uuid4()}"

    def record(**fields: Any) -> bytes:
        return json.dumps(fields).encode()

    out: list[Poison] = []
    schemas = {
        "preprocessed": "ImageJob",
        "features": "FeaturesMessage",
        "status": "StatusUpdate",
    }
    # Too big to parse: the worker fails the job by the record's key (its request id).
    oversized = "-byte limit"
    for topic, schema in schemas.items():
        a, b, c, d, e = rid(), rid(), rid(), rid(), rid()
        incompressible = base64.b64encode(os.urandom(1_500_000)).decode()  # ~2 MB
        out += [
            Poison(topic, "garbage bytes", b"\x00\xff\xfe garbage \x9c" + os.urandom(64)),
            Poison(topic, "JSON array", b"[1, 2, 3]"),
            Poison(topic, "empty value", None),
            Poison(
                topic,
                "wrong schema version",
                record(schema_version=99, request_id=a, submitted_at=now),
                a,
                "unsupported schema_version",
            ),
            Poison(
                topic,
                "missing fields",
                record(schema_version=1, request_id=b, submitted_at=now),
                b,
                f"invalid {schema}",
            ),
            Poison(
                topic,
                "wrong types",
                record(schema_version=1, request_id=c, submitted_at="yesterday", status=7),
                c,
                f"invalid {schema}",
            ),
            Poison(
                topic,
                "oversized ~2 MB, incompressible",
                record(schema_version=1, request_id=d, submitted_at=now, junk=incompressible),
                d,
                oversized,
            ),
            Poison(
                topic,
                "oversized ~2 MB, compressible (lz4)",
                record(schema_version=1, request_id=e, submitted_at=now, junk="A" * 2_000_000),
                e,
                oversized,
                compression="lz4",
            ),
        ]
    out.append(Poison("dead_letter", "garbage without headers", b"\x00not a dead letter\xff"))
    return out


def poison(ctx: Context) -> Outcome:
    from confluent_kafka import KafkaError, Producer

    from penguin12.kafka import client_config
    from penguin12.settings import CommonSettings
    from penguin12_ops.dlq import DlqSettings, read_dead_letters

    settings = CommonSettings()
    topics = {
        "preprocessed": settings.topic_preprocessed,
        "features": settings.topic_features,
        "status": settings.topic_status,
        "dead_letter": settings.topic_dead_letter,
    }
    outcome = Outcome("poison", "poison records written straight into every topic, under load")
    dlq_settings = DlqSettings()
    dlq_start = dead_letter_end(dlq_settings)
    records = _poison_set()
    with under_load(ctx, outcome):
        ctx.wait(ctx.profile.warmup_s)
        for compression in ("none", "lz4"):
            producer = Producer(
                {
                    **client_config(settings),
                    "message.max.bytes": 4_000_000,
                    "compression.type": compression,
                    "enable.idempotence": True,
                    "acks": "all",
                }
            )
            for item in [r for r in records if r.compression == compression]:

                def report(err: KafkaError | None, msg: Any, item: Poison = item) -> None:
                    if err is None:
                        item.outcome = "produced"
                        item.source = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
                    else:
                        item.outcome = f"refused by broker: {err.name()}"

                try:
                    producer.produce(
                        topics[item.topic_key], item.value, key=item.request_id, on_delivery=report
                    )
                except Exception as exc:
                    item.outcome = f"refused by producer: {exc}"
            producer.flush(30)
        # The consumers must carry on: load continues, and every produced poison is dead-lettered.
        ctx.wait(ctx.profile.after_s)
        expected = [r for r in records if r.outcome == "produced" and r.topic_key != "dead_letter"]

        def dead_letters() -> list[Any]:
            return [
                d
                for d in read_dead_letters(dlq_settings)
                if d.offset >= dlq_start.get(d.partition, 0)
            ]

        def all_dead_lettered() -> bool:
            sources = {d.source for d in dead_letters()}
            return all(r.source in sources for r in expected)

        with contextlib.suppress(TimeoutError):
            wait_until(all_dead_lettered, 60, "poison in the dead-letter topic")
        found = dead_letters()
    by_source = {d.source: d for d in found}
    states = final_states(ctx.http, [r.request_id for r in records if r.request_id], 30)
    rows = []
    for item in records:
        row: dict[str, Any] = {
            "topic": item.topic_key,
            "kind": item.kind,
            "outcome": item.outcome or "no delivery report",
        }
        if item.outcome == "produced" and item.topic_key != "dead_letter":
            letter = by_source.get(item.source or "")
            row["dead_lettered"] = letter is not None
            row["reason"] = letter.reason if letter else None
            if item.request_id:
                state = states.get(item.request_id)
                row["job_status"] = state.get("status") if state else None
                row["job_error"] = (state or {}).get("error")
        rows.append(row)
    outcome.details["poison"] = rows
    produced = [r for r in rows if r.get("dead_lettered") is not None]
    outcome.counts["poison_produced"] = len(produced)
    outcome.counts["poison_refused_by_broker"] = sum(
        1 for r in rows if str(r["outcome"]).startswith("refused")
    )
    outcome.counts["dead_lettered"] = sum(1 for r in produced if r["dead_lettered"])
    if outcome.counts.get("lost"):
        outcome.notes.append(
            "jobs stopped finishing after the poison: a consumer is stuck on a record it cannot "
            "dead-letter (grep 'transient failure' .run/logs/*.log). The poison stays in the topic: "
            "until the workers are fixed, `make stop && rm -rf .run/data && make run` unsticks the "
            "local stack (it deletes the local Kafka and Redis data)"
        )
    outcome.checks["every produced poison dead-lettered"] = all(
        r["dead_lettered"] for r in produced
    )
    with_id = [
        (item, row)
        for item, row in zip(records, rows, strict=True)
        if "job_status" in row and item.request_id
    ]
    outcome.checks["poison with a readable id FAILED with its reason"] = all(
        row["job_status"] == "FAILED"
        and item.expect_reason is not None
        and item.expect_reason.lower() in (row["job_error"] or "").lower()
        for item, row in with_id
    )
    listing = subprocess.run(
        [sys.executable, "-m", "penguin12_ops.dlq", "list", "--limit", "100"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outcome.checks["`penguin12-dlq list` reads the dead-letter topic"] = listing.returncode == 0
    if listing.returncode:
        outcome.notes.append(f"dlq list failed: {listing.stderr[-500:]}")
    return outcome
