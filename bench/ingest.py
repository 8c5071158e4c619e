"""Scenario 3 — ingest under saturation: how fast and how promptly POST /v1/infer accepts work
while the workers are saturated with a backlog.

wrk (Debian's package; a Lua script sends real JPEGs as multipart bodies) drives the front door at
several connection counts. For each: accepted submissions/s, accept latency p50/p99 (wrk's own
histogram), the completion rate the workers keep up meanwhile (provenance's
`penguin12_jobs_finished_total`), and accepted uploads per CPU-second of the front door (all its
processes). Targets: accept p99 <= 50 ms while accepting >= 20x the completion rate; issue #14: at
8 connections, accept p99 <= 50 ms and accepted uploads per front-door CPU-second >= 2x the figure
with the decode at the door (`PENGUIN12_DEFER_DECODE=false`, before #14), measured in the same run. The embedding cache lives 1 s here (`PENGUIN12_CACHE_TTL_S=1`) so a recycled image
still costs the backbone.

    uv run python -m bench.ingest [--full] [--connections 8,32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.client import BOUNDARY
from bench.common import ROOT, ProcMonitor, Result, Target, log, parse_args, wait_quiet
from bench.corpus import describe, load_corpus
from bench.load import build_bodies
from bench.stack import DEFAULT_WORKER_NICE, BenchStack, infra

SCENARIO = "3_ingest"
LUA = ROOT / "bench" / "wrk_multipart.lua"
P99_GOAL_MS = 50.0
ACCEPT_RATIO_GOAL = 20.0
# Issue #14: accepted uploads per front-door CPU-second at least this multiple of the front door
# that decodes every upload itself (PENGUIN12_DEFER_DECODE=false, what it did before #14), measured
# in the same run at 8 connections.
CPU_GOAL_FACTOR = 2.0


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", default=None, help="wrk connection counts, e.g. 8,32")
    parser.add_argument(
        "--worker-nice",
        default=None,
        help="nice levels for the workers, one stack each (default: 10 quick, 10,0 full)",
    )


def ensure_wrk() -> str:
    """wrk's path; installs Debian's package when missing and we may (root with apt-get)."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        log("installing wrk (Debian package)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode:
            subprocess.run([apt, "update", "-qq"], env=env, capture_output=True, timeout=600)
            subprocess.run(install, env=env, capture_output=True, timeout=600)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed for this scenario: sudo apt-get install wrk")
    return found


def run_wrk(
    wrk: str,
    url: str,
    bodies_dir: Path,
    count: int,
    *,
    connections: int,
    seconds: float,
    offset: int,
    monitor_pids: dict[str, int],
) -> dict[str, Any]:
    env = {
        **os.environ,
        "PENGUIN12_WRK_BODIES": str(bodies_dir),
        "PENGUIN12_WRK_COUNT": str(count),
        "PENGUIN12_WRK_BOUNDARY": BOUNDARY,
        "PENGUIN12_WRK_OFFSET": str(offset),
    }
    cmd = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds:.0f}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    monitor = ProcMonitor(monitor_pids)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    monitor.track("wrk", proc.pid)
    monitor.start()
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    cpu = monitor.stop()
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("PENGUIN12_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{text[-2000:]}")
    data: dict[str, Any] = json.loads(line.removeprefix("PENGUIN12_JSON "))
    data["cpu"] = cpu
    return data


def measure_stack(
    inf: Any,
    wrk: str,
    bodies_dir: Path,
    count: int,
    connections: list[int],
    seconds: float,
    nice: int,
    quiet_s: float,
    extra_env: dict[str, str] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """One stack (workers at ``nice``): a short backlog-building run, then one run per ``c``."""
    label = label or (SCENARIO if nice == DEFAULT_WORKER_NICE else f"{SCENARIO}-nice{nice}")
    runs = []
    env = {"PENGUIN12_CACHE_TTL_S": "1", **(extra_env or {})}
    with BenchStack(inf, label, extra_env=env, worker_nice=nice) as stack:
        url = f"http://127.0.0.1:{stack.port('preprocessor')}/v1/infer"
        quiet = wait_quiet(stack.pids().values(), quiet_s)
        log(f"workers at nice {nice}: building a backlog (3 s of wrk) to saturate them")
        run_wrk(wrk, url, bodies_dir, count, connections=8, seconds=3, offset=0, monitor_pids={})
        offset = 0
        for c in connections:
            offset += 997  # a different stretch of the corpus each run
            finished0 = stack.metric("provenance", "penguin12_jobs_finished_total")
            t0 = time.monotonic()
            run = run_wrk(
                wrk,
                url,
                bodies_dir,
                count,
                connections=c,
                seconds=seconds,
                offset=offset,
                monitor_pids=stack.pids(),
            )
            elapsed = time.monotonic() - t0
            finished = stack.metric("provenance", "penguin12_jobs_finished_total") - finished0
            accepted = run["statuses"].get("202", 0)
            door_cores = sum(
                cores
                for name, cores in run["cpu"]["cpu_cores_by_process"].items()
                if name.startswith("preprocessor")
            )
            run.update(
                connections=c,
                accepted_per_s=round(accepted / (run["duration_us"] / 1e6), 2),
                completed_per_s=round(finished / elapsed, 2),
                p50_ms=round(run["latency_us"]["p50"] / 1e3, 2),
                p99_ms=round(run["latency_us"]["p99"] / 1e3, 2),
                front_door_cores=round(door_cores, 3),
            )
            run["accepted_per_front_door_cpu_s"] = (
                round(run["accepted_per_s"] / door_cores, 1) if door_cores else None
            )
            run["accept_to_completion"] = (
                round(run["accepted_per_s"] / run["completed_per_s"], 1)
                if run["completed_per_s"]
                else None
            )
            runs.append(run)
            log(
                f"nice {nice}, c={c}: accepted {run['accepted_per_s']}/s, p50 {run['p50_ms']} ms,"
                f" p99 {run['p99_ms']} ms, completed {run['completed_per_s']}/s, "
                f"{run['accepted_per_front_door_cpu_s']} accepted per front-door CPU-s, others used "
                f"{run['cpu']['foreign_busy_cores']} cores"
            )
        backlog = stack.metric(
            "preprocessor", "penguin12_jobs_submitted_total", 'outcome="accepted"'
        ) - stack.metric("provenance", "penguin12_jobs_finished_total")
        engine = stack.engine()
    within = [r for r in runs if r["p99_ms"] <= P99_GOAL_MS]
    chosen = (
        max(within, key=lambda r: r["accepted_per_s"])
        if within
        else min(runs, key=lambda r: r["p99_ms"])
    )
    return {
        "worker_nice": nice,
        "engine": engine,
        "quiet": quiet,
        "runs": runs,
        "backlog_at_end": backlog,
        "chosen": chosen,
        "max_accepted_per_s": max(r["accepted_per_s"] for r in runs),
    }


def main() -> None:
    args, mode = parse_args(__doc__ or "", _add_args)
    result = Result(SCENARIO, "Ingest while the workers are saturated (wrk)", mode)
    wrk = ensure_wrk()
    connections = [int(c) for c in (args.connections or mode.pick("8,32", "1,4,16,64")).split(",")]
    nices = [int(n) for n in (args.worker_nice or mode.pick("10", "10,0")).split(",")]
    seconds = mode.pick(8.0, 20.0)
    corpus = load_corpus(mode.pick(600, 1500))
    result.config = {
        "load_generator": subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.strip()
        or "wrk",
        "wrk_threads": 1,
        "connections": connections,
        "seconds_per_run": seconds,
        "worker_nice_variants": nices,
        "corpus": describe(corpus),
        "service_env": {"PENGUIN12_CACHE_TTL_S": "1"},
        "feature_extractors": 1,
    }
    variants: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="penguin12-wrk-") as tmp, infra() as inf:
        bodies_dir = Path(tmp)
        for i, (_, body) in enumerate(build_bodies(corpus)):
            (bodies_dir / f"{i:05d}.bin").write_bytes(body)
        for nice in nices:
            variants[f"nice{nice}"] = measure_stack(
                inf, wrk, bodies_dir, len(corpus), connections, seconds, nice, mode.pick(10, 60)
            )
        # Before #14: the front door decodes every upload (8 connections, the target's point).
        door = measure_stack(
            inf,
            wrk,
            bodies_dir,
            len(corpus),
            [8],
            seconds,
            nices[0],
            mode.pick(10, 60),
            extra_env={"PENGUIN12_DEFER_DECODE": "false"},
            label=f"{SCENARIO}-decode-at-door",
        )
    result.figures = {"variants": variants, "decode_at_door": door}
    main_variant = variants[f"nice{nices[0]}"]
    chosen = main_variant["chosen"]
    result.targets = [
        Target(
            f"accept p99 (c={chosen['connections']})",
            chosen["p99_ms"],
            P99_GOAL_MS,
            higher_is_better=False,
            unit=" ms",
        ),
        Target(
            f"accepted/s ÷ completed/s (c={chosen['connections']})",
            chosen["accept_to_completion"],
            ACCEPT_RATIO_GOAL,
            note=f"{chosen['accepted_per_s']}/s accepted vs {chosen['completed_per_s']}/s completed",
        ),
    ]
    at8 = next((r for r in main_variant["runs"] if r["connections"] == 8), None)
    before = door["runs"][0]
    if at8 is not None:
        ours, theirs = at8["accepted_per_front_door_cpu_s"], before["accepted_per_front_door_cpu_s"]
        result.targets += [
            Target("accept p99 at c=8 (#14)", at8["p99_ms"], P99_GOAL_MS, False, " ms"),
            Target(
                "accepted per front-door CPU-s ÷ decode at the door, c=8",
                ours / theirs if ours and theirs else None,
                CPU_GOAL_FACTOR,
                note=f"{ours} vs {theirs} accepted uploads per CPU-second (p99 "
                f"{at8['p99_ms']} vs {before['p99_ms']} ms)",
            ),
        ]
    extra = ""
    for key, variant in variants.items():
        if variant is not main_variant:
            c = variant["chosen"]
            extra += (
                f"; workers at {key}: {c['accepted_per_s']:.0f}/s at c={c['connections']} "
                f"(p99 {c['p99_ms']:.1f} ms, completing {c['completed_per_s']:.1f}/s)"
            )
    result.write(
        f"accepted {chosen['accepted_per_s']:.0f}/s at c={chosen['connections']} "
        f"(p50 {chosen['p50_ms']:.1f} ms, p99 {chosen['p99_ms']:.1f} ms) while completing "
        f"{chosen['completed_per_s']:.1f}/s; max accepted {main_variant['max_accepted_per_s']:.0f}/s"
        + extra
    )


if __name__ == "__main__":
    main()
