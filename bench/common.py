"""What every benchmark shares: modes, the machine's description, CPU/RSS monitoring, results.

Each scenario prints ONE summary line and writes ``bench/results/<name>.json`` holding the
machine it ran on, its configuration, its raw figures and its targets (met or missed, with the
measured ratio). The machine is shared with other work more often than not, so every result also
records how much CPU *other* processes used while it was measured (``foreign_busy_cores``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# /proc sampling lives in bench/procstat.py; re-exported here, where the scenarios (and chaos/)
# have always imported it from.
from bench.procstat import ProcMonitor as ProcMonitor
from bench.procstat import foreign_load as foreign_load
from bench.procstat import process_cpu_s as process_cpu_s
from bench.procstat import process_rss_mb as process_rss_mb
from bench.procstat import wait_quiet as wait_quiet

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / ".cache"


# ----------------------------------------------------------------------------- modes


@dataclass(frozen=True)
class Mode:
    """Quick (``make bench``: a few minutes in all) or full (``make bench-full``: the report)."""

    full: bool

    @property
    def name(self) -> str:
        return "full" if self.full else "quick"

    def pick(self, quick: Any, full: Any) -> Any:
        return full if self.full else quick


def parse_args(description: str, add: Any = None) -> tuple[argparse.Namespace, Mode]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--full",
        action="store_true",
        default=os.environ.get("PENGUIN12_BENCH_FULL", "") == "1",
        help="report mode: longer runs and more points (default: quick mode)",
    )
    if add is not None:
        add(parser)
    args = parser.parse_args()
    return args, Mode(bool(args.full))


# --------------------------------------------------------------------------- machine


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    """One git query about this checkout, its output stripped."""
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=10)
    return done.stdout.strip()


def _git_commit() -> str:
    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """The machine and software a figure came from (published with every figure)."""
    import torch

    try:
        import onnxruntime

        ort: str | None = onnxruntime.__version__
    except ImportError:
        ort = None
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cpu_model": _lscpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "onnxruntime": ort,
        "git_commit": _git_commit(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "loadavg_at_start": os.getloadavg()[0],
    }


# --------------------------------------------------------------------------- /proc

# --------------------------------------------------------------------------- stats


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds."""
    if not seconds:
        return {"n": 0}
    ms = [1e3 * s for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


# --------------------------------------------------------------------------- results


@dataclass
class Target:
    """One target of the issue: ``measured`` compared with ``goal`` (``higher`` is better or not)."""

    name: str
    measured: float | None
    goal: float
    higher_is_better: bool = True
    unit: str = ""
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.measured is None or math.isnan(self.measured):
            return None
        return self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal

    @property
    def ratio(self) -> float | None:
        """measured/goal when higher is better, goal/measured otherwise: >= 1 means met."""
        if self.measured is None or math.isnan(self.measured):
            return None
        if self.measured <= 0:
            return None if self.higher_is_better else math.inf
        r = self.measured / self.goal if self.higher_is_better else self.goal / self.measured
        return round(r, 3)

    def as_dict(self) -> dict[str, Any]:
        word = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        return {
            "name": self.name,
            "goal": f"{'>=' if self.higher_is_better else '<='} {self.goal:g}{self.unit}",
            "measured": None if self.measured is None else round(self.measured, 3),
            "ratio_to_goal": "inf" if self.ratio == math.inf else self.ratio,
            "status": word,
            "note": self.note,
        }


@dataclass
class Result:
    scenario: str
    title: str
    mode: Mode
    config: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)
    started: float = field(default_factory=time.monotonic)

    def write(self, summary: str) -> Path:
        """Write bench/results/<scenario>.json and print the one summary line."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        verdicts = [t.as_dict() for t in self.targets]
        line = f"[{self.scenario}] {summary}"
        if verdicts:
            line += " | " + "; ".join(
                f"{v['name']}: {v['status']} ({v['measured']} vs {v['goal']})" for v in verdicts
            )
        body = {
            "scenario": self.scenario,
            "title": self.title,
            "mode": self.mode.name,
            "summary": line,
            "duration_s": round(time.monotonic() - self.started, 1),
            "machine": self.machine,
            "config": self.config,
            "figures": self.figures,
            "targets": verdicts,
        }
        path = RESULTS / f"{self.scenario}.json"
        path.write_text(json.dumps(body, indent=2, default=_json_default) + "\n")
        print(line, flush=True)
        return path


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_result(scenario: str) -> dict[str, Any] | None:
    path = RESULTS / f"{scenario}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the summary line)."""
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def kafka_client(bootstrap: str) -> dict[str, Any]:
    """A Kafka client's base config for ``bootstrap``: the services' own `client_config`, so the
    security settings (PENGUIN12_KAFKA_SECURITY_PROTOCOL, SASL, TLS) apply to the tools too."""
    from penguin12.kafka import client_config
    from penguin12.settings import CommonSettings

    return client_config(CommonSettings(kafka_bootstrap=bootstrap))
