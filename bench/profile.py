"""Where the CPU goes: py-spy profiles of every service while the pipeline is saturated.

Runs the saturated closed loop of scenario 2 (one stack, ``--fe`` feature extractors, extra
service variables with ``--env``) and samples each Python service with py-spy for the measurement
window. Writes collapsed stacks (flamegraph input) to bench/results/profiles/<service>.txt and, per
service, the functions with the most samples on top of the stack (self) and anywhere in it
(inclusive) to bench/results/profiles/summary.json. Not part of `make bench`: run it to explain a
result.

    uv run python -m bench.profile [--fe 1] [--env PENGUIN12_MODEL_NUM_THREADS=1] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import RESULTS, log
from bench.corpus import load_corpus
from bench.load import build_bodies
from bench.pipeline_saturated import measure
from bench.stack import BenchStack, infra

OUT = RESULTS / "profiles"


def start_py_spy(pid: int, seconds: float, out: Path, gil: bool = False) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed (uv sync installs the dev group)")
    cmd = [py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50"]
    cmd += ["-f", "raw", "-o", str(out), "--nonblocking", "--threads"]
    if gil:  # only samples that hold the GIL: where the Python CPU goes, waits left out
        cmd.append("--gil")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame(entry: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = entry.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


# Frames every stack shares (thread and event-loop plumbing): left out of the inclusive ranking.
_PLUMBING = (
    "(threading.py)",
    "(runners.py)",
    "(<frozen runpy>)",
    "(__main__.py)",
    "(_compat.py)",
    "(server.py)",
    "(base_events.py)",
    "(events.py)",
    "(main.py)",
    "(runner.py)",
)


def summarize(path: Path, top: int = 25) -> dict[str, Any]:
    """Top self and inclusive frames of a py-spy raw (collapsed) profile, in % of samples."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [_frame(f) for f in stack.split(";")[1:]]  # the first entry is the thread
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            if not frame.endswith(_PLUMBING):
                incl_counts[frame] += count

    def pct(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {"samples": total, "self_pct": pct(self_counts), "inclusive_pct": pct(incl_counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fe", type=int, default=1, help="feature extractor processes")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the services")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    args = parser.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    bodies = build_bodies(load_corpus(1000))
    OUT.mkdir(parents=True, exist_ok=True)
    warmup = 6.0
    summary: dict[str, Any] = {"feature_extractors": args.fe, "env": env}
    with (
        infra() as inf,
        BenchStack(inf, "profile", feature_extractors=args.fe, extra_env=env) as stack,
    ):
        services = {n: p.process.pid for n, p in stack.processes.items()}

        async def run() -> dict[str, Any]:
            async def spy() -> list[tuple[str, subprocess.Popen[bytes]]]:
                await asyncio.sleep(warmup)
                return [
                    (name, start_py_spy(pid, args.seconds, OUT / f"{name}.txt", args.gil))
                    for name, pid in services.items()
                ]

            spies = asyncio.create_task(spy())
            result = await measure(
                stack, bodies, clients=args.clients, warmup_s=warmup, measure_s=args.seconds
            )
            for name, proc in await spies:
                _, err = await asyncio.to_thread(proc.communicate)
                if proc.returncode:
                    log(f"py-spy on {name} failed: {err.decode(errors='replace')[-300:]}")
            return result

        result = asyncio.run(run())
    summary["completed_per_s"] = result["completed_per_s"]
    summary["cpu_cores_by_process"] = result["cpu"]["cpu_cores_by_process"]
    for name in services:
        path = OUT / f"{name}.txt"
        if path.is_file():
            summary[name] = summarize(path)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[profile] {result['completed_per_s']} completed/s; profiles in {OUT}")
    for name in services:
        if name in summary:
            top = ", ".join(f"{f} {p}%" for f, p in summary[name]["self_pct"][:6])
            print(f"  {name}: {top}")


if __name__ == "__main__":
    main()
