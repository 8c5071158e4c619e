"""Hostile clients (issue #11) under load: idempotency races, skewed re-opens, decode bombs."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections import Counter

import httpx

from bench.hostile_uploads import build_mix, burst
from chaos.config import PREPROCESSOR, api_headers
from chaos.harness import Context, Outcome, under_load, wait_until
from chaos.probes import status_of
from chaos.processes import read_pid


def hostile_clients(ctx: Context) -> Outcome:
    """Idempotency races and dead-letter re-opens with skewed clocks, under load."""
    from confluent_kafka import Producer

    from penguin12.schemas import JobStatus, ModelInfo, Result, StatusUpdate, encode
    from penguin12.settings import CommonSettings

    outcome = Outcome(
        "hostile-clients",
        "same Idempotency-Key sent 8x at once; re-open + COMPLETED with the replayer's clock 3 s "
        "ahead/behind; re-open of a COMPLETED job",
    )
    headers = api_headers()
    race_codes: Counter[int] = Counter()
    split_keys: list[str] = []
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)

        # 1. Eight copies of one request at once: one job, the others 409 or its ticket.
        def post(key: str, image: bytes) -> httpx.Response:
            return httpx.post(
                f"{PREPROCESSOR}/v1/infer",
                files={"file": ("photo.jpg", image, "image/jpeg")},
                headers={**headers, "Idempotency-Key": key},
                timeout=30,
            )

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for round_ in range(5):
                key = f"chaos-{uuid.uuid4()}"
                image = ctx.images[round_ % len(ctx.images)]
                answers = list(pool.map(post, [key] * 8, [image] * 8))
                race_codes.update(r.status_code for r in answers)
                ids = {r.json()["request_id"] for r in answers if r.status_code == 202}
                if len(ids) > 1:
                    split_keys.append(key)
                for rid in ids:
                    tracker.add(rid)

        # 2. Re-open with skewed clocks, and a re-open of a COMPLETED job, on the status topic.
        settings = CommonSettings()
        model = ModelInfo(name="chaos", version="000000000000", architecture="tiny", demo=True)
        result = Result(
            prediction="REAL", confidence=0.9, fake_probability=0.1, model=model, demo=True
        )
        expected: dict[str, str] = {}
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        now = time.time()
        for case, skew in (("ahead", 3.0), ("behind", -3.0), ("completed", 0.0)):
            rid = f"chaos-reopen-{case}-{uuid.uuid4().hex[:8]}"
            history = [
                StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.PENDING, at=now,
                             service="chaos"),
                StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.COMPLETED,
                             at=now + 1, service="chaos", result=result)
                if case == "completed"
                else StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.FAILED,
                                  at=now + 1, service="chaos", error="dead-lettered"),
                StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.PENDING,
                             at=now + 2 + skew, service="dlq-replayer", reopen=True),
            ]  # fmt: skip
            if case != "completed":
                history.append(
                    StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.COMPLETED,
                                 at=now + 2, service="chaos", result=result)
                )  # fmt: skip
            for update in history:
                producer.produce(settings.topic_status, encode(update), key=rid)
            expected[rid] = "COMPLETED"
        producer.flush(30)
        reopened = wait_until(
            lambda: all(status_of(ctx.http, rid) == "COMPLETED" for rid in expected) or None,
            60,
            "the re-opened jobs to complete",
        )
        ctx.wait(ctx.profile.after_s)
    outcome.counts["race_requests"] = sum(race_codes.values())
    outcome.details["race_codes"] = dict(race_codes)
    outcome.checks["an Idempotency-Key race answers only 202 or 409"] = set(race_codes) <= {
        202,
        409,
    }
    outcome.checks["an Idempotency-Key names one job"] = not split_keys
    outcome.checks["re-opened jobs complete whatever the clock skew"] = bool(reopened)
    outcome.checks["a COMPLETED job stays COMPLETED after a re-open"] = all(
        status_of(ctx.http, rid) == "COMPLETED" for rid in expected
    )
    return outcome


def decode_bombs(ctx: Context) -> Outcome:
    count = 64 if ctx.profile.full else 32
    outcome = Outcome(
        "decode-bombs",
        f"{count} small files that decode big (16-bit PNG, lossless WebP, RLE BMP) at once",
    )
    headers = api_headers()
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)
        pid = read_pid("preprocessor")
        if pid is None:
            raise RuntimeError("the preprocessor is not running")
        result = burst(PREPROCESSOR, pid, build_mix(count), headers=headers)
        for bomb in result.outcomes:
            if bomb.request_id:  # followed to the end like the load's own jobs
                tracker.add(bomb.request_id)
        ctx.wait(ctx.profile.after_s)
    outcome.counts.update(bombs=len(result.outcomes), bombs_accepted=result.accepted)
    outcome.details.update(
        bomb_statuses=result.statuses,
        bomb_refusals=sorted({f"{b.status}: {b.detail}" for b in result.outcomes if b.detail}),
        preprocessor_rss_before_mb=round(result.rss_before / 2**20, 1),
        preprocessor_peak_rss_mb=round(result.peak_rss / 2**20, 1),
    )
    outcome.checks["every bomb answered"] = result.unanswered == 0
    outcome.checks["bombs: no 5xx but 503 with Retry-After"] = result.bad_server_errors == 0
    outcome.checks["preprocessor peak RSS < 1 GiB"] = result.peak_rss < 2**30
    outcome.checks["preprocessor alive and ready"] = result.alive_after and result.ready_after
    return outcome
