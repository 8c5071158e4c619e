"""Diagnostic — what recording a job's status updates costs, one by one and batched.

Provenance records a consumer batch of status updates with `JobStore.apply_many`: the monotonic
Lua script (which also PUBLISHes the change for live-status waiters) once per update, the whole
batch in one pipeline, so one Redis round trip per batch. Before, it called `JobStore.apply` per
update, then a separate PUBLISH: two round trips per update, four updates per job. This compares,
on real `StatusUpdate` records (PENDING, PROCESSING_FEATURES, CLASSIFYING, COMPLETED with a
result, for N jobs):

* ``apply``: `JobStore.apply` per update (one round trip each);
* ``batched``: `JobStore.apply_many` per consumer batch of 64, as provenance does.

It counts the client's and the Redis server's CPU per update (the client is this process).

    uv run python -m bench.status_store_cost [--full]
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from bench.common import Result, log, parse_args, process_cpu_s, wait_quiet
from bench.stack import infra

SCENARIO = "diag_status_store_cost"
BATCH = 64


def updates(jobs: int) -> list[Any]:
    from penguin12.schemas import JobStatus, ModelInfo, Result, StatusUpdate

    model = ModelInfo(
        name="penguin12", version="0123456789ab", architecture="efficientnet_b0", demo=True
    )
    out = []
    for _ in range(jobs):
        rid, sub = str(uuid.uuid4()), time.time()
        for k, status in enumerate(
            (JobStatus.PENDING, JobStatus.PROCESSING_FEATURES, JobStatus.CLASSIFYING)
        ):
            out.append(
                StatusUpdate(
                    request_id=rid, submitted_at=sub, status=status, at=sub + k, service="x"
                )
            )
        result = Result(
            prediction="FAKE", confidence=0.9, fake_probability=0.9, model=model, demo=True
        )
        out.append(
            StatusUpdate(
                request_id=rid,
                submitted_at=sub,
                status=JobStatus.COMPLETED,
                at=sub + 3,
                service="x",
                result=result,
            )
        )
    return out


def measure(redis_pid: int, run: Any, items: list[Any]) -> dict[str, float]:
    me = os.getpid()
    c0, r0, t0 = process_cpu_s(me) or 0.0, process_cpu_s(redis_pid) or 0.0, time.perf_counter()
    run(items)
    wall = time.perf_counter() - t0
    c1, r1 = process_cpu_s(me) or 0.0, process_cpu_s(redis_pid) or 0.0
    n = len(items)
    return {
        "client_cpu_ms_per_update": round(1e3 * (c1 - c0) / n, 4),
        "redis_cpu_ms_per_update": round(1e3 * (r1 - r0) / n, 4),
        "wall_ms_per_update": round(1e3 * wall / n, 4),
    }


def main() -> None:
    from penguin12.state import JobStore

    _, mode = parse_args(__doc__ or "")
    result = Result(SCENARIO, "Recording status updates: per update vs batched", mode)
    jobs = mode.pick(1000, 4000)
    variants: dict[str, Any] = {}
    with infra() as inf:
        redis_pid = inf.pids.get("redis", 0)
        client = inf.redis(0)
        store = JobStore(client, 3600)
        result.config = {
            "jobs": jobs,
            "updates_per_job": 4,
            "batch": BATCH,
            "quiet": wait_quiet([redis_pid], mode.pick(10, 60)),
        }

        def per_update(items: list[Any]) -> None:
            for u in items:
                store.apply(u)

        def batched(items: list[Any]) -> None:
            for i in range(0, len(items), BATCH):
                store.apply_many(items[i : i + BATCH])

        per_update(updates(50))  # warm-up (script cached, connections open)
        rounds: dict[str, list[dict[str, float]]] = {}
        for _ in range(3):
            for name, fn in (("apply", per_update), ("batched", batched)):
                items = updates(jobs)
                rounds.setdefault(name, []).append(measure(redis_pid, fn, items))
        client.flushdb()
        for name, runs in rounds.items():
            runs.sort(key=lambda r: r["client_cpu_ms_per_update"] + r["redis_cpu_ms_per_update"])
            variants[name] = runs[1]
            log(f"{name}: {variants[name]}")
    per_job = {
        name: round(4 * (v["client_cpu_ms_per_update"] + v["redis_cpu_ms_per_update"]), 3)
        for name, v in variants.items()
    }
    result.figures = {"variants": variants, "cpu_ms_per_job": per_job, "statistic": "median of 3"}
    result.write(
        f"CPU per job (client + Redis): apply {per_job['apply']:.2f} ms, batched "
        f"{per_job['batched']:.2f} ms"
    )


if __name__ == "__main__":
    main()
