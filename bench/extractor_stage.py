"""Scenario 7 — the feature-extractor stage against the bare backbone (issue #3's speed targets).

Baseline, in this process: the project's own `FeatureExtractorModel` with the feature extractor's
settings (default runtime, `PENGUIN12_MODEL_NUM_THREADS` as the service gets it, batches of its
`max_batch_size`) embedding already-prepared images: batched images/s, and the latency of one
image at batch 1. It runs before and after the stage; the better run counts (the harder bar).

The stage: one real `feature_extractor` process on Kafka and Redis and nothing else (no
preprocessor, no classifier, no HTTP). Prepared `ImageJob` records with unique pixels (no cache
hits) are written straight into its topic:
- saturated: a backlog of N records; throughput is the slope of its
  `penguin12_backbone_images_total` once the backlog is written, up to 90 % of it;
- idle: M records one at a time, each after the previous one's features record arrived. The
  stage's time per job is the mean of its `penguin12_processing_seconds` (from the poll to the
  outputs handed to the producer: decode, cache lookup, backbone, cache write, encode): what the
  image waits for in this stage. Reported beside it: the wait for the broker's acks that follows
  (`penguin12_delivery_seconds`; the offset is stored only then, but the features record is
  already on its way), and the wall time from producing the job to reading its features record
  (two Kafka hops included).

Targets (issue #3): saturated stage ÷ bare batched >= 0.90; idle time per job ÷ bare batch-1
latency <= 1.2.

    uv run python -m bench.extractor_stage [--full]
"""

from __future__ import annotations

import hashlib
import statistics
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.bare_work import build_models
from bench.common import (
    ProcMonitor,
    Result,
    Target,
    kafka_client,
    latency_summary,
    log,
    parse_args,
    wait_quiet,
)
from bench.corpus import describe, load_corpus

if TYPE_CHECKING:
    from penguin12.imaging import Preprocessing
from bench.stack import BenchStack, infra
from penguin12_devstack.ports import free_port

SCENARIO = "7_extractor_stage"
STAGE_GOAL = 0.90
IDLE_GOAL = 1.2
FE = "feature_extractor-0"


def prepared(corpus: list[bytes], preprocessing: Preprocessing) -> list[np.ndarray]:
    from penguin12.imaging import prepare_image

    return [
        prepare_image(data, preprocessing=preprocessing, max_pixels=40_000_000).pixels
        for data in corpus
    ]


def bare_backbone(
    fe: Any, images: list[np.ndarray], batch: int, seconds: float, single_calls: int
) -> dict[str, Any]:
    """Batched images/s and CPU per image, then the latency of one image at batch 1."""
    stack = np.stack(images)
    fe.embed(stack[:batch])  # warm-up
    done, i = 0, 0
    cpu0, started = time.process_time(), time.perf_counter()
    while time.perf_counter() - started < seconds:
        chunk = stack[i : i + batch]
        if len(chunk) < batch:
            i, chunk = 0, stack[:batch]
        fe.embed(chunk)
        done += len(chunk)
        i += batch
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    single = []
    for k in range(single_calls):
        one = stack[k % len(stack)][None]
        t0 = time.perf_counter()
        fe.embed(one)
        single.append(time.perf_counter() - t0)
    return {
        "images_per_s": round(done / elapsed, 2),
        "cpu_ms_per_image": round(1e3 * cpu / done, 2),
        "batch_1": latency_summary(single),
        "batch_1_mean_ms": round(1e3 * statistics.fmean(single), 3),
    }


def image_job(pixels: np.ndarray) -> tuple[str, bytes]:
    from penguin12 import schemas

    request_id = str(uuid.uuid4())
    raw = pixels.tobytes()
    job = schemas.ImageJob(
        request_id=request_id,
        submitted_at=time.time(),
        pixels=raw,
        height=pixels.shape[0],
        width=pixels.shape[1],
        content_sha256=hashlib.sha256(raw).hexdigest(),
        source_format="JPEG",
    )
    return request_id, schemas.encode(job, framed=True)  # as the preprocessor sends it


def saturated(
    stack: BenchStack, producer: Any, topic: str, images: list[np.ndarray]
) -> dict[str, Any]:
    """Write the whole backlog, then time the stage from there to 90 % of it."""
    start_count = stack.metric(FE, "penguin12_backbone_images_total")
    for pixels in images:
        request_id, value = image_job(pixels)
        producer.produce(topic, value, key=request_id)
        producer.poll(0)
    producer.flush(60)
    t0 = time.perf_counter()
    c0 = stack.metric(FE, "penguin12_backbone_images_total")
    goal = start_count + 0.9 * len(images)
    if c0 >= goal:
        raise SystemExit("the backlog was gone before it was written: use more images")
    with ProcMonitor(stack.pids()) as monitor:
        deadline = time.monotonic() + 600
        c1 = c0
        while c1 < goal and time.monotonic() < deadline:
            time.sleep(0.25)
            c1 = stack.metric(FE, "penguin12_backbone_images_total")
        t1 = time.perf_counter()
    # Let it finish the backlog, so the idle phase starts idle.
    while stack.metric(FE, "penguin12_backbone_images_total") < start_count + len(images):
        if time.monotonic() > deadline:
            raise SystemExit("the feature extractor did not finish the backlog")
        time.sleep(0.25)
    cpu = monitor.result["cpu_cores_by_process"].get(FE, 0.0) * monitor.result["window_s"]
    return {
        "backlog": len(images),
        "measured_images": c1 - c0,
        "seconds": round(t1 - t0, 2),
        "images_per_s": round((c1 - c0) / (t1 - t0), 2),
        "fe_cpu_ms_per_image": round(1e3 * cpu / max(c1 - c0, 1), 2),
        "monitor": monitor.result,
    }


def idle(stack: BenchStack, producer: Any, topic: str, images: list[np.ndarray]) -> dict[str, Any]:
    """One job at a time: the stage's own time (its histogram) and the wall time around it."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **kafka_client(stack.infra.bootstrap),
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    features = stack.env()["PENGUIN12_TOPIC_FEATURES"]
    partitions = consumer.list_topics(features, timeout=30).topics[features].partitions
    ends = []
    for p in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(features, p), timeout=30)
        ends.append(TopicPartition(features, p, high))
    consumer.assign(ends)
    sum0 = stack.metric(FE, "penguin12_processing_seconds_sum")
    count0 = stack.metric(FE, "penguin12_processing_seconds_count")
    acks0 = stack.metric(FE, "penguin12_delivery_seconds_sum")
    wall = []
    try:
        for pixels in images:
            request_id, value = image_job(pixels)
            t0 = time.perf_counter()
            producer.produce(topic, value, key=request_id)
            producer.flush(30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if (
                    message is not None
                    and not message.error()
                    and message.key() == request_id.encode()
                ):
                    wall.append(time.perf_counter() - t0)
                    break
            else:
                raise SystemExit(f"no features record for {request_id} within 30 s")
    finally:
        consumer.close()
    batches = stack.metric(FE, "penguin12_processing_seconds_count") - count0
    seconds = stack.metric(FE, "penguin12_processing_seconds_sum") - sum0
    acks = stack.metric(FE, "penguin12_delivery_seconds_sum") - acks0
    return {
        "jobs": len(images),
        "batches": batches,
        "stage_mean_ms": round(1e3 * seconds / max(batches, 1), 3),
        "broker_ack_wait_mean_ms": round(1e3 * acks / max(batches, 1), 3),
        "produce_to_features_record": latency_summary(wall),
    }


def main() -> None:
    _, mode = parse_args(__doc__ or "")
    result = Result(SCENARIO, "Feature-extractor stage vs the bare backbone", mode)
    backlog, single = mode.pick(600, 1500), mode.pick(40, 150)
    corpus = load_corpus(backlog + single)
    from feature_extractor.settings import FeatureExtractorSettings
    from penguin12.kafka import producer_config

    fe_settings = FeatureExtractorSettings()
    batch = fe_settings.max_batch_size
    fe, _, runtime = build_models(None, threads=_service_threads())
    images = prepared(corpus, fe.preprocessing)
    seconds = mode.pick(6.0, 15.0)
    result.config = {
        "runtime": runtime,
        "intra_op_threads": _service_threads(),
        "max_batch_size": batch,
        "backlog": backlog,
        "idle_jobs": single,
        "corpus": describe(corpus),
        "stage": "one feature_extractor process, make-run defaults, nothing else running",
    }
    bare: list[dict[str, Any]] = []
    with infra() as inf:
        stack = BenchStack(inf, SCENARIO)
        stack.log_dir.mkdir(parents=True, exist_ok=True)
        stack.ports["provenance"] = free_port()  # only named in status URLs; not started
        try:
            stack._start(FE)
            stack.processes[FE].wait_ready(180)
            quiet = wait_quiet(stack.pids().values(), mode.pick(10, 60))
            log(f"bare backbone ({runtime}, batch {batch}), {seconds:.0f} s")
            bare.append(bare_backbone(fe, images[:backlog], batch, seconds, single))
            log(f"  {bare[-1]['images_per_s']} img/s, batch-1 {bare[-1]['batch_1_mean_ms']} ms")
            topic = stack.env()["PENGUIN12_TOPIC_PREPROCESSED"]
            from confluent_kafka import Producer

            producer = Producer({**producer_config(fe_settings), **kafka_client(inf.bootstrap)})
            size = fe.config.input_size
            warm = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
            producer.produce(topic, image_job(warm)[1])  # warm the stage up (not a corpus image)
            producer.flush(30)
            log(f"stage, saturated: a backlog of {backlog}")
            stage = saturated(stack, producer, topic, images[:backlog])
            log(f"  {stage['images_per_s']} img/s")
            log(f"stage, idle: {single} jobs one at a time")
            at_idle = idle(stack, producer, topic, images[backlog:])
            log(f"  {at_idle['stage_mean_ms']} ms per job inside the stage")
            bare.append(bare_backbone(fe, images[:backlog], batch, seconds, single))
            log(f"bare again: {bare[-1]['images_per_s']} img/s, {bare[-1]['batch_1_mean_ms']} ms")
            engine = stack.engine()
        finally:
            stack.stop()
    best_rate = max(b["images_per_s"] for b in bare)
    best_single = min(b["batch_1_mean_ms"] for b in bare)
    ratio = stage["images_per_s"] / best_rate
    idle_ratio = at_idle["stage_mean_ms"] / best_single
    result.figures = {
        "quiet": quiet,
        "bare": bare,
        "stage_saturated": stage,
        "stage_idle": at_idle,
        "stage_engine": engine,
    }
    result.targets = [
        Target("saturated stage ÷ bare batched", ratio, STAGE_GOAL),
        Target("idle stage time per job ÷ bare batch-1", idle_ratio, IDLE_GOAL, False),
    ]
    result.write(
        f"stage {stage['images_per_s']} vs bare {best_rate} img/s ({ratio:.2f}); idle "
        f"{at_idle['stage_mean_ms']} vs {best_single} ms ({idle_ratio:.2f}), then "
        f"{at_idle['broker_ack_wait_mean_ms']} ms waiting for broker acks; "
        f"produce->features p50 {at_idle['produce_to_features_record'].get('p50_ms')} ms"
    )


def _service_threads() -> int:
    from penguin12_model import ModelSettings

    return ModelSettings().num_threads


if __name__ == "__main__":
    main()
