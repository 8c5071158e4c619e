"""Scenario 4 — what users would pick instead: our pipeline vs a plain synchronous FastAPI endpoint.

The same unique JPEGs, the same model, the same closed-loop users (32, then 128 at once):

* ours: POST /v1/infer (answers at once), then the job is awaited until COMPLETED (see
  bench/load.py); `make run` defaults, one feature extractor;
* theirs: bench/sync_baseline.py, one uvicorn process that decodes and runs the model inline and
  answers with the verdict (same allocator settings as our services, so only the design differs).

Figures: completed images/s and latency p50/p99 for both; for ours the front door's latency
(POST /v1/infer) and the end-to-end latency. Targets: ours completes >= 1.15x as many images/s
(issue #14), and its front door's p99 is >= 10x lower than the sync endpoint's p99.

    uv run python -m bench.vs_sync [--full] [--clients 32,128]
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from typing import Any

from bench.client import HttpConn
from bench.common import RESULTS, ProcMonitor, Target, latency_summary, log
from bench.load import build_bodies
from bench.peers import Body, PeerRun, closed_loop_users, measure_ours, ratio, run_watched
from bench.stack import DEFAULT_WORKER_NICE, BenchStack, infra, model_dir
from penguin12_devstack.ports import free_port
from penguin12_devstack.process import die_with_parent, terminate_process
from penguin12_devstack.readiness import wait_http_ready

SCENARIO = "4_vs_sync"
P99_FACTOR_GOAL = 10.0
THROUGHPUT_GOAL = 1.15


async def sync_closed_loop(
    port: int, bodies: list[Body], clients: int, warmup_s: float, measure_s: float
) -> dict[str, Any]:
    """``clients`` users POSTing to the sync endpoint back to back; counts answers in the window."""
    started = time.monotonic()
    window = (started + warmup_s, started + warmup_s + measure_s)
    latencies: list[float] = []
    completed = 0
    errors: dict[int, int] = {}

    async def one_job(conn: HttpConn, body: Body) -> None:
        nonlocal completed
        content_type, payload = body
        t0 = time.monotonic()
        code, _ = await conn.request("POST", "/v1/infer-sync", payload, content_type)
        t1 = time.monotonic()
        if code != 200:
            errors[code] = errors.get(code, 0) + 1
        elif window[0] <= t1 < window[1]:
            completed += 1
            latencies.append(t1 - t0)

    await closed_loop_users(
        port,
        bodies,
        clients=clients,
        until=window[1],
        grace_s=warmup_s + measure_s + 300,
        one_job=one_job,
    )
    return {
        "clients": clients,
        "completed_in_window": completed,
        "completed_per_s": round(completed / measure_s, 2),
        "errors_by_status": errors,
        "latency": latency_summary(latencies),
    }


def run_sync(
    bodies: list[Body],
    clients: list[int],
    warmup_s: float,
    measure_s: float,
    threads: int,
) -> dict[str, Any]:
    port = free_port()
    log_file = RESULTS / "logs" / SCENARIO / f"sync_baseline-threads{threads}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bench.sync_baseline", "--port", str(port)]
    cmd += ["--model-dir", str(model_dir()), "--threads", str(threads)]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
    runs: dict[str, Any] = {}
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", 180, log_file, proc)
        for c in clients:
            log(f"sync baseline ({threads or 'all'} intra-op threads), {c} users")
            runs[f"c{c}"] = run_watched(
                ProcMonitor({"sync_baseline": proc.pid}),
                warmup_s,
                measure_s,
                functools.partial(sync_closed_loop, port, bodies, c, warmup_s, measure_s),
            )
            r = runs[f"c{c}"]
            log(
                f"  sync c={c}: {r['completed_per_s']} img/s, p50 {r['latency'].get('p50_ms')} ms,"
                f" p99 {r['latency'].get('p99_ms')} ms"
            )
    finally:
        terminate_process(proc, 20)
    return runs


def main() -> None:
    peer = PeerRun.start(
        __doc__ or "",
        SCENARIO,
        "Ours vs a synchronous FastAPI endpoint",
        default_clients="32,128",
        quick_measure_s=12.0,
    )
    result, mode, clients = peer.result, peer.mode, peer.clients
    warmup_s, measure_s = peer.warmup_s, peer.measure_s
    bodies = build_bodies(peer.corpus)
    peer.configure(
        sync="one uvicorn process, `def` endpoint (thread pool), batch of one, same model; "
        "its best intra-op thread setting (all cores out of the box; full mode also tries 1)",
    )
    variants: dict[str, dict[str, Any]] = {}
    with infra() as inf:
        for nice in mode.pick([DEFAULT_WORKER_NICE], [DEFAULT_WORKER_NICE, 0]):
            label = SCENARIO if nice == DEFAULT_WORKER_NICE else f"{SCENARIO}-nice{nice}"
            with BenchStack(inf, label, worker_nice=nice) as stack:
                runs = measure_ours(
                    stack,
                    bodies,
                    clients,
                    warmup_s=warmup_s,
                    measure_s=measure_s,
                    quiet_s=mode.pick(10, 60),
                    what=f"ours (workers at nice {nice})",
                )
            variants[f"nice{nice}"] = runs
    ours = variants[f"nice{DEFAULT_WORKER_NICE}"]
    # The alternative gets its best thread setting (out of the box: all cores), per user count.
    sync_variants = {
        t: run_sync(bodies, clients, warmup_s, measure_s, t) for t in mode.pick([0], [0, 1])
    }
    sync = {
        f"c{c}": max(
            ({**runs[f"c{c}"], "threads": t} for t, runs in sync_variants.items()),
            key=lambda run: float(run["completed_per_s"]),
        )
        for c in clients
    }
    table = []
    for c in clients:
        o, s = ours[f"c{c}"], sync[f"c{c}"]
        o_p99 = o["accept_latency"].get("p99_ms")
        s_p99 = s["latency"].get("p99_ms")
        row = {
            "clients": c,
            "variant": "ours, `make run` defaults",
            "ours_completed_per_s": o["completed_per_s"],
            "sync_completed_per_s": s["completed_per_s"],
            "throughput_ratio": ratio(o["completed_per_s"], s["completed_per_s"]),
            "ours_front_door_p50_ms": o["accept_latency"].get("p50_ms"),
            "ours_front_door_p99_ms": o_p99,
            "ours_end_to_end_p50_ms": o["end_to_end_latency"].get("p50_ms"),
            "ours_end_to_end_p99_ms": o["end_to_end_latency"].get("p99_ms"),
            "sync_p50_ms": s["latency"].get("p50_ms"),
            "sync_p99_ms": s_p99,
            "p99_factor": round(s_p99 / o_p99, 1) if o_p99 and s_p99 else None,
        }
        table.append(row)
        result.targets.append(
            Target(f"ours/sync completed img/s, c={c}", row["throughput_ratio"], THROUGHPUT_GOAL)
        )
        result.targets.append(
            Target(f"sync p99 ÷ our front-door p99, c={c}", row["p99_factor"], P99_FACTOR_GOAL)
        )
    for key, runs in variants.items():
        if key == f"nice{DEFAULT_WORKER_NICE}":
            continue
        for c in clients:
            o, s_ = runs[f"c{c}"], sync[f"c{c}"]
            o_p99, s_p99 = o["accept_latency"].get("p99_ms"), s_["latency"].get("p99_ms")
            table.append(
                {
                    "clients": c,
                    "variant": f"ours with workers at {key}",
                    "ours_completed_per_s": o["completed_per_s"],
                    "sync_completed_per_s": s_["completed_per_s"],
                    "throughput_ratio": ratio(o["completed_per_s"], s_["completed_per_s"]),
                    "ours_front_door_p99_ms": o_p99,
                    "sync_p99_ms": s_p99,
                    "p99_factor": round(s_p99 / o_p99, 1) if o_p99 and s_p99 else None,
                }
            )
    result.figures = {
        "table": table,
        "ours": variants,
        "sync": sync,
        "sync_by_threads": sync_variants,
    }
    result.write(
        "; ".join(
            f"c={r['clients']}: ours {r['ours_completed_per_s']:.1f} vs sync "
            f"{r['sync_completed_per_s']:.1f} img/s, p99 {r['ours_front_door_p99_ms']:.0f} vs "
            f"{r['sync_p99_ms']:.0f} ms"
            for r in table
            if r["variant"].endswith("defaults")
        )
    )


if __name__ == "__main__":
    main()
