"""Scenario 5 — latency at idle, and on an embedding-cache hit, with a per-stage breakdown.

One image at a time (the system otherwise idle): POST /v1/infer, then a tight poll (every 2 ms) of
the status URL until COMPLETED. The stages come from the services' own timestamps: the job's
``submitted_at`` and each status record's ``at`` (read from the status topic by a bystander
consumer), and the client's clock for the POST and for the moment COMPLETED became visible.
Then every image is sent again: its embedding is cached, so the backbone is skipped. Target:
a cache hit completes in < 50 ms p50 (client-observed: POST sent -> COMPLETED visible).

    uv run python -m bench.latency [--full]
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.client import HttpConn, multipart_body
from bench.common import Result, Target, latency_summary, log, parse_args, wait_quiet
from bench.corpus import describe, load_corpus
from bench.stack import BenchStack, StatusWatcher, infra

SCENARIO = "5_latency"
HIT_P50_GOAL_MS = 50.0
POLL_S = 0.002
# The chain from POST sent to COMPLETED seen; ``answered`` runs beside it (the 202 is sent once
# Kafka acknowledged the job and PENDING is in Redis, while the job is already moving on).
STAGES = (
    ("upload_decode", "POST sent -> submitted_at (upload, multipart parse, decode + resize)"),
    ("answered", "submitted_at -> 202 received (Kafka acks, PENDING in Redis) [beside the chain]"),
    ("to_features", "submitted_at -> feature extractor starts (produce, Kafka hop, poll)"),
    ("features", "feature extractor: cache lookup + backbone (+ status out)"),
    ("to_verdict", "features out -> classifier verdict (delivery, hop, head)"),
    ("to_visible", "verdict -> COMPLETED visible at GET status (hop, provenance, Redis, poll)"),
    ("client_total", "client: POST sent -> COMPLETED seen"),
    ("server_total", "server: submitted_at -> last_updated"),
)


async def one_job(
    pre: HttpConn, prov: HttpConn, watcher: StatusWatcher, body: tuple[str, bytes]
) -> dict[str, float] | None:
    content_type, payload = body
    wall0, t0 = time.time(), time.monotonic()
    code, answer = await pre.request("POST", "/v1/infer", payload, content_type)
    t_post = time.monotonic() - t0
    if code != 202:
        log(f"submission refused: {code} {answer[:200]!r}")
        return None
    rid = json.loads(answer)["request_id"]
    deadline = time.monotonic() + 30
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        code, state = await prov.get_json(f"/v1/status/{rid}")
        if code == 200 and state["status"] in ("COMPLETED", "FAILED"):
            break
        await asyncio.sleep(POLL_S)
    else:
        return None
    t_seen = time.monotonic() - t0
    wall_seen = wall0 + t_seen
    if state["status"] != "COMPLETED":
        return None
    for _ in range(500):  # the bystander may be a few ms behind
        steps = watcher.steps.get(rid, {})
        if {"PROCESSING_FEATURES", "CLASSIFYING", "COMPLETED"} <= steps.keys():
            break
        await asyncio.sleep(0.002)
    steps = watcher.steps.get(rid, {})
    sub = float(state["submitted_at"])
    fe_start = steps.get("PROCESSING_FEATURES", float("nan"))
    fe_end = steps.get("CLASSIFYING", float("nan"))
    done = steps.get("COMPLETED", float("nan"))
    return {
        "upload_decode": sub - wall0,
        "answered": wall0 + t_post - sub,
        "to_features": fe_start - sub,
        "features": fe_end - fe_start,
        "to_verdict": done - fe_end,
        "to_visible": wall_seen - done,
        "client_total": t_seen,
        "server_total": float(state["last_updated"]) - sub,
    }


async def series(
    stack: BenchStack, bodies: list[tuple[str, bytes]], pause_s: float
) -> list[dict[str, float]]:
    watcher = StatusWatcher(stack.infra.bootstrap, stack.topic_status)
    pre = HttpConn("127.0.0.1", stack.port("preprocessor"))
    prov = HttpConn("127.0.0.1", stack.port("provenance"))
    out = []
    try:
        for body in bodies:
            sample = await one_job(pre, prov, watcher, body)
            if sample is not None:
                out.append(sample)
            await asyncio.sleep(pause_s)
    finally:
        await pre.close()
        await prov.close()
        watcher.close()
    return out


def breakdown(samples: list[dict[str, float]]) -> dict[str, Any]:
    return {
        key: {"what": what, **latency_summary([s[key] for s in samples if s[key] == s[key]])}
        for key, what in STAGES
    }


def main() -> None:
    _, mode = parse_args(__doc__ or "")
    result = Result(SCENARIO, "Latency at idle and on a cache hit", mode)
    n = mode.pick(20, 100)
    warm = 3
    corpus = load_corpus(n + warm)
    bodies = [multipart_body(d) for d in corpus]
    result.config = {
        "jobs": n,
        "discarded_warmup_jobs": warm,
        "poll_interval_ms": 1e3 * POLL_S,
        "corpus": describe(corpus),
        "feature_extractors": 1,
    }
    with infra() as inf, BenchStack(inf, SCENARIO) as stack:
        result.config["quiet"] = wait_quiet(stack.pids().values(), mode.pick(10, 60))
        hits0 = stack.fe_metric("penguin12_embedding_cache_total", 'result="hit"')
        log(f"{n} jobs one at a time (cold: unique images)")
        cold = asyncio.run(series(stack, bodies, 0.05))[warm:]
        hits1 = stack.fe_metric("penguin12_embedding_cache_total", 'result="hit"')
        log(f"{n} jobs one at a time (the same images again: cache hits)")
        hot = asyncio.run(series(stack, bodies[warm:], 0.05))
        hits2 = stack.fe_metric("penguin12_embedding_cache_total", 'result="hit"')
    result.figures = {
        "cold": breakdown(cold),
        "cache_hit": breakdown(hot),
        "cache_hits_counted": {"cold_series": hits1 - hits0, "hit_series": hits2 - hits1},
    }
    cold_p50 = result.figures["cold"]["client_total"].get("p50_ms")
    hot_p50 = result.figures["cache_hit"]["client_total"].get("p50_ms")
    hot_server = result.figures["cache_hit"]["server_total"].get("p50_ms")
    result.targets = [
        Target(
            "cache hit, client-observed p50",
            hot_p50,
            HIT_P50_GOAL_MS,
            higher_is_better=False,
            unit=" ms",
            note=f"server-side p50 {hot_server} ms",
        )
    ]
    result.write(
        f"idle p50 {cold_p50:.0f} ms (p99 {result.figures['cold']['client_total'].get('p99_ms'):.0f}"
        f" ms); cache hit p50 {hot_p50:.1f} ms (server-side {hot_server:.1f} ms)"
    )


if __name__ == "__main__":
    main()
