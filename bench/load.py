"""Closed-loop load through the public API: POST /v1/infer, then wait for the job to finish.

Each of ``clients`` virtual users submits an image, waits until its job is COMPLETED, fetches the
verdict with one GET of the status URL, and submits the next. How a user learns the job finished:

* ``longpoll`` (default): ``GET status_url?wait=25&until=final``, again only if 25 s pass: the
  API's own way to wait for a verdict (one request per job, no polling).
* ``poll``: GET ``status_url`` every ``poll_interval_s`` until final, as naive clients do; the
  polls' own cost to provenance is part of the result.
* ``stream``: the benchmark reads the status topic as a bystander and wakes the user the moment
  the final record is there; then one GET of ``status_url``. This isolates the pipeline from the
  status API (it costs the services nothing).

Every loop is bounded: by the number of distinct images (each is sent at most once, so the
embedding cache never hits unless asked to) and by time.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bench.client import HttpConn, multipart_body
from bench.common import latency_summary
from bench.stack import BenchStack, StatusWatcher


@dataclass
class LoadResult:
    clients: int
    measure_s: float
    submitted: int = 0
    accepted: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    accept_latency_s: list[float] = field(default_factory=list)
    e2e_latency_s: list[float] = field(default_factory=list)
    completed_in_window: int = 0
    failed: int = 0
    unfinished: int = 0
    exhausted: bool = False
    window: tuple[float, float] = (0.0, 0.0)
    polls: int = 0

    @property
    def completed_per_s(self) -> float:
        length = self.window[1] - self.window[0]
        return self.completed_in_window / length if length > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "window_s": round(self.window[1] - self.window[0], 2),
            "submitted": self.submitted,
            "accepted": self.accepted,
            "refused_by_status": self.refused,
            "completed_in_window": self.completed_in_window,
            "completed_per_s": round(self.completed_per_s, 2),
            "failed": self.failed,
            "unfinished_at_end": self.unfinished,
            "corpus_exhausted": self.exhausted,
            "status_polls": self.polls,
            "accept_latency": latency_summary(self.accept_latency_s),
            "end_to_end_latency": latency_summary(self.e2e_latency_s),
        }


def build_bodies(corpus: list[bytes]) -> list[tuple[str, bytes]]:
    return [multipart_body(data, f"bench-{i}.jpg") for i, data in enumerate(corpus)]


async def closed_loop(
    stack: BenchStack,
    watcher: StatusWatcher | None,
    bodies: list[tuple[str, bytes]],
    *,
    clients: int,
    warmup_s: float,
    measure_s: float,
    wait: str = "longpoll",
    poll_interval_s: float = 0.25,
    job_timeout_s: float = 120.0,
) -> LoadResult:
    """Run ``clients`` users for ``warmup_s + measure_s``; count what finishes in the window."""
    if watcher is not None:
        watcher.attach(asyncio.get_running_loop())
    pre_port, prov_port = stack.port("preprocessor"), stack.port("provenance")
    result = LoadResult(clients, measure_s)
    started = time.monotonic()
    window = (started + warmup_s, started + warmup_s + measure_s)
    result.window = window
    cursor = 0

    async def user() -> None:
        nonlocal cursor
        submit = HttpConn("127.0.0.1", pre_port)
        status_conn = HttpConn("127.0.0.1", prov_port)
        try:
            while time.monotonic() < window[1]:
                if cursor >= len(bodies):
                    result.exhausted = True
                    return
                content_type, body = bodies[cursor]
                cursor += 1
                t0 = time.monotonic()
                code, payload = await submit.request("POST", "/v1/infer", body, content_type)
                t1 = time.monotonic()
                result.submitted += 1
                if code != 202:
                    result.refused[code] = result.refused.get(code, 0) + 1
                    await asyncio.sleep(0.05)
                    continue
                result.accepted += 1
                if window[0] <= t0 < window[1]:
                    result.accept_latency_s.append(t1 - t0)
                rid = json.loads(payload)["request_id"]
                final = await _wait(rid, status_conn, wait, poll_interval_s, job_timeout_s)
                t2 = time.monotonic()
                if final is None:
                    result.unfinished += 1
                    continue
                if final != "COMPLETED":
                    result.failed += 1
                if window[0] <= t2 < window[1]:
                    result.completed_in_window += final == "COMPLETED"
                    result.e2e_latency_s.append(t2 - t0)
        finally:
            await submit.close()
            await status_conn.close()

    async def _wait(
        rid: str, conn: HttpConn, how: str, interval: float, limit_s: float
    ) -> str | None:
        path = f"/v1/status/{rid}"
        if how == "longpoll":
            since = "PENDING"
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                code, body = await conn.get_json(f"{path}?wait=25&since={since}&until=final")
                result.polls += 1
                if code != 200:
                    await asyncio.sleep(0.05)
                    continue
                if body["status"] in ("COMPLETED", "FAILED"):
                    return str(body["status"])
                since = body["status"]
            return None
        if how == "stream":
            if watcher is None:
                raise ValueError("users waiting by stream need a StatusWatcher")
            final = await watcher.wait_final(rid, limit_s)
            if final is None:
                return None
            # The user fetches the verdict once, through the public status URL.
            for _ in range(200):
                code, body = await conn.get_json(path)
                result.polls += 1
                if code == 200 and body["status"] in ("COMPLETED", "FAILED"):
                    return str(body["status"])
                await asyncio.sleep(0.005)
            return None
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            code, body = await conn.get_json(path)
            result.polls += 1
            if code == 200 and body["status"] in ("COMPLETED", "FAILED"):
                return str(body["status"])
            await asyncio.sleep(interval)
        return None

    tasks = [asyncio.create_task(user()) for _ in range(clients)]
    # Users finish the job in hand after the window; bounded by the job timeout.
    _, pending = await asyncio.wait(tasks, timeout=warmup_s + measure_s + job_timeout_s + 10)
    for task in pending:
        task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return result


async def observe_window(stack: BenchStack, warmup_s: float, measure_s: float) -> dict[str, Any]:
    """CPU by process and feature-extractor counters over the measurement window only."""
    from bench.common import ProcMonitor

    await asyncio.sleep(warmup_s)
    before = await asyncio.to_thread(stack.batch_stats)
    monitor = ProcMonitor(stack.pids()).start()
    await asyncio.sleep(measure_s)
    cpu = monitor.stop()
    after = await asyncio.to_thread(stack.batch_stats)
    delta = {k: after[k] - before[k] for k in after}
    batches = delta.pop("fe_batches")
    records = delta.pop("fe_records")
    return {
        "cpu": cpu,
        "fe_counters_in_window": delta,
        "fe_mean_batch_size": round(records / batches, 2) if batches else None,
        "fe_ms_per_batch": {
            stage: round(1e3 * delta[f"fe_{stage}_s"] / batches, 1) if batches else None
            for stage in ("processing", "delivery")
        },
        "fe_cache_hits_total": after["fe_cache_hits"],
    }
