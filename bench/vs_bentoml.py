"""Scenario 10 — ours vs BentoML's task queue, the off-the-shelf server closest to our API.

The same unique JPEGs, the same model (bench/bentoml_service.py: `prepare_image` + the same
backbone and head), the same closed-loop users:

* ours: POST /v1/infer, then the verdict by long-poll on status_url (`make run` defaults, one
  feature extractor), as in scenario 4;
* BentoML: ``POST /infer/submit`` (``@bentoml.task``, adaptive batching), then
  ``GET /infer/status`` every ``--poll-ms`` until completed (BentoML has no long-poll), then
  ``GET /infer/get`` for the verdict: its documented client flow.

BentoML runs in its own virtual environment (.cache/bench/bentoml: its pins conflict with our
uv.lock), made with uv from PyPI with our torch, torchvision, onnxruntime, numpy and Pillow
versions (from the warm uv cache) and our two packages installed from this checkout. Its settings:
one worker process whose runtime uses all cores, and two workers of one thread each (the better
run counts), adaptive batching up to our batch size (16) with BentoML's default latency bound for
tasks (60 s), access log off. A task BentoML failed (its dispatcher sheds load
when over the latency bound) counts as not completed.

Targets (issue #14): ours ÷ BentoML completed/s >= 1.0, and our front-door p99 no worse than
BentoML's submit p99.

    uv run python -m bench.vs_bentoml [--full] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.client import HttpConn, multipart_body
from bench.common import (
    CACHE,
    RESULTS,
    ROOT,
    ProcMonitor,
    Target,
    latency_summary,
    log,
    wait_quiet,
)
from bench.load import build_bodies
from bench.peers import Body, PeerRun, closed_loop_users, measure_ours, ratio, run_watched
from bench.stack import BenchStack, infra, model_dir
from penguin12_devstack.ports import free_port

SCENARIO = "10_vs_bentoml"
BENTOML_VERSION = "1.4.40"
VENV = CACHE / "bench" / "bentoml"
# Same versions as ours, so both serve the same runtime (and torch comes from the uv cache).
SAME_AS_OURS = ("torch", "torchvision", "onnxruntime", "numpy", "pillow")
THROUGHPUT_GOAL = 1.0


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-ms", type=int, default=100, help="BentoML status poll interval")


def _package_root(module: str) -> Path:
    """The directory holding the pyproject.toml of one of our packages, wherever it lives."""
    spec = __import__(module)
    path = Path(spec.__file__).resolve().parent
    while not (path / "pyproject.toml").is_file():
        if path.parent == path:
            raise SystemExit(f"no pyproject.toml above {module}")
        path = path.parent
    return path


def ensure_env() -> Path:
    """BentoML's own virtual environment (made once; our packages reinstalled every run)."""
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    python = VENV / "bin" / "python"
    if not python.exists():
        log(f"making BentoML's environment in {VENV} (once)")
        subprocess.run([uv, "venv", "-q", str(VENV), "--python", sys.executable], check=True)
    constraints = VENV / "constraints.txt"
    constraints.write_text("".join(f"{p}=={importlib.metadata.version(p)}\n" for p in SAME_AS_OURS))
    ours = [str(_package_root("penguin12")), str(_package_root("penguin12_model"))]
    cmd = [uv, "pip", "install", "-q", "-c", str(constraints), f"bentoml=={BENTOML_VERSION}"]
    cmd += [*ours, "--reinstall-package", "penguin12-common"]
    cmd += ["--reinstall-package", "penguin12-model"]
    env = {**os.environ, "VIRTUAL_ENV": str(VENV), "UV_LINK_MODE": "hardlink"}
    subprocess.run(cmd, check=True, env=env, timeout=1800)
    return python


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (BentoML's server forks its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            raw = (entry / "stat").read_text()
            ppid = int(raw[raw.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


@contextlib.contextmanager
def bentoml_server(python: Path, workers: int, threads: int) -> Any:
    port = free_port()
    log_file = RESULTS / "logs" / SCENARIO / f"bentoml-w{workers}-t{threads}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PENGUIN12_BENTO_MODEL_DIR": str(model_dir()),
        "PENGUIN12_BENTO_WORKERS": str(workers),
        "PENGUIN12_BENTO_THREADS": str(threads),
        "PENGUIN12_BENTO_MAX_BATCH": "16",
        "BENTOML_DO_NOT_TRACK": "True",
    }
    env.pop("VIRTUAL_ENV", None)
    cmd = [str(python), "-m", "bentoml", "serve", "bench.bentoml_service:Detector"]
    cmd += ["--port", str(port), "--host", "127.0.0.1", "--working-dir", str(ROOT)]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"BentoML exited; see {log_file}")
            if _ready(port):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"BentoML not ready in 300 s; see {log_file}")
            time.sleep(1)
        yield port, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _ready(port: int) -> bool:
    async def probe() -> bool:
        conn = HttpConn("127.0.0.1", port, timeout_s=5)
        try:
            code, _ = await conn.request("POST", "/readyz", b"{}", "application/json")
            return code == 200
        except OSError:
            return False
        finally:
            await conn.close()

    return asyncio.run(probe())


async def bentoml_closed_loop(
    port: int,
    bodies: list[Body],
    *,
    clients: int,
    warmup_s: float,
    measure_s: float,
    poll_s: float,
    job_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """``clients`` users: submit, poll status until completed, fetch the result; next image."""
    started = time.monotonic()
    window = (started + warmup_s, started + warmup_s + measure_s)
    submit_latency: list[float] = []
    e2e: list[float] = []
    counts = {"submitted": 0, "completed": 0, "failed": 0, "polls": 0, "unfinished": 0}
    errors: dict[int, int] = {}

    async def one_job(conn: HttpConn, body: Body) -> None:
        content_type, payload = body
        t0 = time.monotonic()
        code, answer = await conn.request("POST", "/infer/submit", payload, content_type)
        t1 = time.monotonic()
        counts["submitted"] += 1
        if code != 200:
            errors[code] = errors.get(code, 0) + 1
            await asyncio.sleep(0.05)
            return
        if window[0] <= t0 < window[1]:
            submit_latency.append(t1 - t0)
        task_id = json.loads(answer)["task_id"]
        status = await _poll(conn, task_id, poll_s, job_timeout_s)
        if status == "completed":
            code, _ = await conn.request("GET", f"/infer/get?task_id={task_id}", b"", "")
            status = "completed" if code == 200 else "failed"
        t2 = time.monotonic()
        if status is None:
            counts["unfinished"] += 1
        elif status != "completed":
            counts["failed"] += 1
        elif window[0] <= t2 < window[1]:
            counts["completed"] += 1
            e2e.append(t2 - t0)

    async def _poll(conn: HttpConn, task_id: str, poll: float, limit_s: float) -> str | None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            await asyncio.sleep(poll)
            code, body = await conn.get_json(f"/infer/status?task_id={task_id}")
            counts["polls"] += 1
            if code == 200 and body["status"] in ("completed", "failed", "canceled"):
                return str(body["status"])
        return None

    await closed_loop_users(
        port,
        bodies,
        clients=clients,
        until=window[1],
        grace_s=warmup_s + measure_s + job_timeout_s + 10,
        one_job=one_job,
    )
    return {
        "clients": clients,
        **counts,
        "completed_per_s": round(counts["completed"] / measure_s, 2),
        "errors_by_status": errors,
        "submit_latency": latency_summary(submit_latency),
        "end_to_end_latency": latency_summary(e2e),
        "polls_per_job": round(counts["polls"] / max(counts["submitted"], 1), 1),
    }


def run_bentoml(
    python: Path,
    corpus: list[bytes],
    clients: list[int],
    warmup_s: float,
    measure_s: float,
    poll_s: float,
    workers: int,
    threads: int,
) -> dict[str, Any]:
    bodies = [multipart_body(data, f"bench-{i}.jpg", "files") for i, data in enumerate(corpus)]
    runs: dict[str, Any] = {}
    with bentoml_server(python, workers, threads) as (port, pid):
        quiet = wait_quiet(_descendants(pid), 10)
        for c in clients:
            log(f"BentoML ({workers} worker(s), {threads or 'all'} threads), {c} users")
            run = run_watched(
                ProcMonitor({f"bentoml-{p}": p for p in _descendants(pid)}),
                warmup_s,
                measure_s,
                functools.partial(
                    bentoml_closed_loop,
                    port,
                    bodies,
                    clients=c,
                    warmup_s=warmup_s,
                    measure_s=measure_s,
                    poll_s=poll_s,
                ),
            )
            cores = sum(v for k, v in run["cpu"]["cpu_cores_by_process"].items() if k != "bench")
            done = run["completed_per_s"] * measure_s
            run["cpu_ms_per_image"] = round(1e3 * cores * measure_s / done, 2) if done else None
            run["quiet"] = quiet
            if run["failed"]:
                log(f"  BentoML failed {run['failed']} tasks: see {RESULTS / 'logs' / SCENARIO}")
            runs[f"c{c}"] = run
            log(
                f"  BentoML c={c}: {run['completed_per_s']} img/s, submit p99 "
                f"{run['submit_latency'].get('p99_ms')} ms, e2e p99 "
                f"{run['end_to_end_latency'].get('p99_ms')} ms, "
                f"others used {run['cpu']['foreign_busy_cores']} cores"
            )
    return runs


def main() -> None:
    peer = PeerRun.start(
        __doc__ or "",
        SCENARIO,
        "Ours vs BentoML's task queue (@bentoml.task)",
        default_clients="32",
        quick_measure_s=15.0,
        more_args=_add_args,
    )
    args, mode, result, clients = peer.args, peer.mode, peer.result, peer.clients
    warmup_s, measure_s, corpus = peer.warmup_s, peer.measure_s, peer.corpus
    python = ensure_env()
    settings = [(1, 0), (2, 1)]  # (workers, threads): the better run counts
    peer.configure(
        bentoml=f"bentoml {BENTOML_VERSION}, own venv; @bentoml.task(batchable=True, "
        f"max_batch_size=16); (workers, threads) tried: {settings}; users poll status every "
        f"{args.poll_ms} ms, then GET the result",
    )
    with infra() as inf, BenchStack(inf, SCENARIO) as stack:
        ours = measure_ours(
            stack,
            build_bodies(corpus),
            clients,
            warmup_s=warmup_s,
            measure_s=measure_s,
            quiet_s=mode.pick(10, 60),
        )
    by_setting = {
        f"workers{w}-threads{t}": run_bentoml(
            python, corpus, clients, warmup_s, measure_s, args.poll_ms / 1e3, w, t
        )
        for w, t in settings
    }
    table = []
    for c in clients:
        best_key = max(by_setting, key=lambda k: by_setting[k][f"c{c}"]["completed_per_s"])
        b, o = by_setting[best_key][f"c{c}"], ours[f"c{c}"]
        o_p99, b_p99 = o["accept_latency"].get("p99_ms"), b["submit_latency"].get("p99_ms")
        row = {
            "clients": c,
            "bentoml_setting": best_key,
            "ours_completed_per_s": o["completed_per_s"],
            "bentoml_completed_per_s": b["completed_per_s"],
            "throughput_ratio": ratio(o["completed_per_s"], b["completed_per_s"]),
            "ours_front_door_p99_ms": o_p99,
            "bentoml_submit_p99_ms": b_p99,
            "ours_end_to_end_p99_ms": o["end_to_end_latency"].get("p99_ms"),
            "bentoml_end_to_end_p99_ms": b["end_to_end_latency"].get("p99_ms"),
            "ours_cpu_ms_per_image": o["system_cpu_ms_per_image"],
            "bentoml_cpu_ms_per_image": b["cpu_ms_per_image"],
        }
        table.append(row)
        result.targets.append(
            Target(f"ours/BentoML completed img/s, c={c}", row["throughput_ratio"], THROUGHPUT_GOAL)
        )
        result.targets.append(
            Target(
                f"our front-door p99 ÷ BentoML submit p99, c={c}",
                o_p99 / b_p99 if o_p99 and b_p99 else None,
                1.0,
                higher_is_better=False,
                note=f"{o_p99} vs {b_p99} ms",
            )
        )
    result.figures = {"table": table, "ours": ours, "bentoml": by_setting}
    result.write(
        "; ".join(
            f"c={r['clients']}: ours {r['ours_completed_per_s']:.1f} vs BentoML "
            f"{r['bentoml_completed_per_s']:.1f} img/s, front-door p99 "
            f"{r['ours_front_door_p99_ms']:.0f} vs submit p99 {r['bentoml_submit_p99_ms']:.0f} ms"
            for r in table
        )
    )


if __name__ == "__main__":
    main()
