"""Diagnostic — what one job costs Kafka, and what a leaner record format would save.

The saturated pipeline spends several CPU-ms per image in the Kafka broker (scenario 2's
``cpu_cores_by_process``). This measures it apart from everything else, on the same broker
settings: N prepared images are produced the way the preprocessor produces them (idempotent,
``acks=all``, ``linger.ms=1``, eight in flight, then acknowledged) and consumed the way the feature
extractor consumes them, and the broker's CPU (and the clients') is counted per record, for

* ``json+lz4``: today's record, an `ImageJob` as JSON with base64 pixels, lz4-compressed;
* ``json+none``: the same record, uncompressed;
* ``binary+none``: the raw 150 528 pixel bytes with the other fields in headers;
* ``upload json+none`` / ``upload binary+none``: the default record since the deferred decode
  (issue #14), the upload as it came, as base64 in JSON or as raw bytes;
* ``status x4``: the four small status records every job also produces (PENDING ...).

    uv run python -m bench.kafka_cost [--full]
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from bench.common import Result, kafka_client, log, parse_args, process_cpu_s, wait_quiet
from bench.corpus import load_corpus
from bench.stack import infra

SCENARIO = "diag_kafka_cost"


def job_values(
    n: int,
) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes], list[bytes]]:
    """(ImageJob JSON, raw pixels, a StatusUpdate JSON, upload ImageJob JSON, raw upload) for
    ``n`` real images."""
    from penguin12 import schemas
    from penguin12.imaging import CLIP_PREPROCESSING, prepare_image

    corpus = load_corpus(n)
    jsons, raws, statuses, upload_jsons, uploads = [], [], [], [], []
    for i, data in enumerate(corpus):
        image = prepare_image(data, preprocessing=CLIP_PREPROCESSING, max_pixels=40_000_000)
        rid = str(uuid.UUID(int=i))
        job = schemas.ImageJob(
            request_id=rid,
            submitted_at=time.time(),
            pixels=image.pixels.tobytes(),
            height=224,
            width=224,
            content_sha256=image.sha256,
            source_format=image.source_format,
        )
        jsons.append(schemas.encode(job))
        raws.append(image.pixels.tobytes())
        status = schemas.StatusUpdate(
            request_id=rid,
            submitted_at=job.submitted_at,
            status=schemas.JobStatus.PENDING,
            service="preprocessor",
        )
        statuses.append(schemas.encode(status))
        deferred = job.model_copy(
            update={"pixels": None, "height": None, "width": None, "upload": data}
        )
        upload_jsons.append(schemas.encode(deferred))
        uploads.append(data)
    return jsons, raws, statuses, upload_jsons, uploads


def run_variant(
    bootstrap: str, kafka_pid: int, values: list[bytes], records: int, compression: str
) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"diag-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka_client(bootstrap))
    for future in admin.create_topics([NewTopic(topic, 12, 1)]).values():
        future.result(30)
    producer = Producer(
        {
            **kafka_client(bootstrap),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
            "compression.type": compression,
            "message.max.bytes": 1_000_000,
        }
    )
    me = os.getpid()
    broker0, client0, t0 = process_cpu_s(kafka_pid) or 0.0, process_cpu_s(me) or 0.0, time.time()
    for i in range(records):
        producer.produce(topic, value=values[i % len(values)], key=str(i))
        if i % 8 == 7:  # eight requests in flight, each answered once acknowledged
            producer.flush(30)
    producer.flush(30)
    produce = {
        "broker_cpu_ms_per_record": 1e3 * ((process_cpu_s(kafka_pid) or 0.0) - broker0) / records,
        "client_cpu_ms_per_record": 1e3 * ((process_cpu_s(me) or 0.0) - client0) / records,
        "records_per_s": records / (time.time() - t0),
    }
    consumer = Consumer(
        {
            **kafka_client(bootstrap),
            "group.id": f"diag-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "max.partition.fetch.bytes": 4_000_000,
        }
    )
    consumer.subscribe([topic])
    broker0, client0, t0 = process_cpu_s(kafka_pid) or 0.0, process_cpu_s(me) or 0.0, time.time()
    seen = 0
    deadline = time.time() + 120
    while seen < records and time.time() < deadline:
        seen += sum(m.error() is None for m in consumer.consume(64, timeout=1.0))
    consume = {
        "broker_cpu_ms_per_record": 1e3
        * ((process_cpu_s(kafka_pid) or 0.0) - broker0)
        / max(seen, 1),
        "client_cpu_ms_per_record": 1e3 * ((process_cpu_s(me) or 0.0) - client0) / max(seen, 1),
        "records": seen,
    }
    consumer.close()
    for future in admin.delete_topics([topic]).values():
        future.result(30)
    size = sum(len(v) for v in values) / len(values)
    return {
        "compression": compression,
        "value_kb": round(size / 1000, 1),
        "produce": {k: round(v, 3) for k, v in produce.items()},
        "consume": {k: round(v, 3) for k, v in consume.items()},
        "broker_cpu_ms_per_record": round(
            produce["broker_cpu_ms_per_record"] + consume["broker_cpu_ms_per_record"], 3
        ),
    }


def main() -> None:
    _, mode = parse_args(__doc__ or "")
    result = Result(SCENARIO, "Kafka's CPU per job record, by record format", mode)
    records = mode.pick(800, 3000)
    jsons, raws, statuses, upload_jsons, uploads = job_values(64)
    variants: dict[str, Any] = {}
    with infra() as inf:
        kafka_pid = inf.pids.get("kafka")
        if not kafka_pid:
            raise SystemExit("the broker's pid is unknown")
        result.config = {
            "records_per_variant": records,
            "statistic": "median of the rounds",
            "quiet": wait_quiet([kafka_pid], mode.pick(10, 60)),
        }
        plan = (
            ("json+lz4", jsons, "lz4", records),
            ("json+none", jsons, "none", records),
            ("binary+none", raws, "none", records),
            ("binary+lz4", raws, "lz4", records),
            ("upload json+none", upload_jsons, "none", records),
            ("upload binary+none", uploads, "none", records),
            ("status x4", statuses, "lz4", 4 * records),
        )
        log("warming the broker up (JIT) with a discarded run")
        run_variant(inf.bootstrap, kafka_pid, jsons, records // 2, "lz4")
        rounds: dict[str, list[dict[str, Any]]] = {}
        for _ in range(mode.pick(2, 3)):  # round-robin: disturbances hit every variant alike
            for name, values, compression, n in plan:
                rounds.setdefault(name, []).append(
                    run_variant(inf.bootstrap, kafka_pid, values, n, compression)
                )
        for name, runs in rounds.items():
            runs.sort(key=lambda r: r["broker_cpu_ms_per_record"])
            variants[name] = runs[len(runs) // 2]  # the median round
            variants[name]["rounds_broker_cpu_ms_per_record"] = [
                r["broker_cpu_ms_per_record"] for r in runs
            ]
            log(f"{name}: broker {variants[name]['broker_cpu_ms_per_record']} CPU-ms/record")
    variants["status x4"]["broker_cpu_ms_per_job"] = round(
        4 * variants["status x4"]["broker_cpu_ms_per_record"], 3
    )
    result.figures = {"variants": variants}
    result.write(
        "broker CPU-ms per image record: "
        + ", ".join(
            f"{k} {v['broker_cpu_ms_per_record']:.2f}" for k, v in variants.items() if "x4" not in k
        )
        + f"; status records {variants['status x4']['broker_cpu_ms_per_job']:.2f} per job"
    )


if __name__ == "__main__":
    main()
