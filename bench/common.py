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
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / ".cache"
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


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


def _git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        ).stdout.strip()
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


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return None


class ProcMonitor:
    """Samples CPU and RSS of named processes, and the machine's total CPU, in a thread.

    ``foreign_busy_cores`` is the CPU that processes *not* tracked here (other people's work on a
    shared machine) used during the window: a figure measured with it above ~0.2 is contended.
    """

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.5):
        self.pids = dict(pids)
        self.pids.setdefault("bench", os.getpid())
        self.interval_s = interval_s
        self._first_cpu: dict[str, float] = {}
        self._last_cpu: dict[str, float] = {}
        self.rss_max: dict[str, float] = {}
        self.rss_last: dict[str, float] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._machine0 = (0, 0)
        self._t0 = 0.0
        self.result: dict[str, Any] = {}

    def track(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        self._sample_one(name, pid)

    def _sample_one(self, name: str, pid: int) -> None:
        cpu = process_cpu_s(pid)
        if cpu is not None:
            self._first_cpu.setdefault(name, cpu)
            self._last_cpu[name] = cpu
        rss = process_rss_mb(pid)
        if rss is not None:
            self.rss_last[name] = rss
            self.rss_max[name] = max(rss, self.rss_max.get(name, 0.0))

    def _sample(self) -> None:
        for name, pid in list(self.pids.items()):
            self._sample_one(name, pid)
        self.samples.append((time.monotonic(), dict(self.rss_last)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> ProcMonitor:
        self._machine0 = _machine_ticks()
        self._t0 = time.monotonic()
        self._first_cpu.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="proc-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        busy1, _ = _machine_ticks()
        busy0, _ = self._machine0
        machine_busy = (busy1 - busy0) / _TICK / elapsed
        per_proc = {
            name: round((self._last_cpu[name] - self._first_cpu.get(name, 0.0)) / elapsed, 3)
            for name in self._last_cpu
        }
        own = sum(per_proc.values())
        self.result = {
            "window_s": round(elapsed, 2),
            "machine_busy_cores": round(machine_busy, 3),
            "own_busy_cores": round(own, 3),
            "foreign_busy_cores": round(max(0.0, machine_busy - own), 3),
            "cpu_cores_by_process": dict(sorted(per_proc.items(), key=lambda kv: -kv[1])),
            "rss_max_mb": {k: round(v, 1) for k, v in sorted(self.rss_max.items())},
        }
        return self.result

    def __enter__(self) -> ProcMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def foreign_load(own_pids: Iterable[int], window_s: float = 1.0) -> float:
    """CPU cores used by processes other than ``own_pids`` (and this one) over ``window_s``."""
    pids = [*own_pids, os.getpid()]
    own0 = sum(process_cpu_s(p) or 0.0 for p in pids)
    busy0, _ = _machine_ticks()
    time.sleep(window_s)
    busy1, _ = _machine_ticks()
    own1 = sum(process_cpu_s(p) or 0.0 for p in pids)
    return max(0.0, (busy1 - busy0) / _TICK / window_s - (own1 - own0) / window_s)


def wait_quiet(
    own_pids: Iterable[int], max_wait_s: float, threshold_cores: float = 0.3
) -> dict[str, float]:
    """Wait (bounded) until other processes leave the CPUs mostly idle; say how long it took."""
    pids = list(own_pids)
    started = time.monotonic()
    load = foreign_load(pids)
    while load > threshold_cores and time.monotonic() - started < max_wait_s:
        load = foreign_load(pids, 2.0)
    waited = time.monotonic() - started
    if load > threshold_cores:
        print(
            f"  note: other processes use {load:.2f} cores of {os.cpu_count()}; measuring anyway",
            file=sys.stderr,
        )
    return {"waited_s": round(waited, 1), "foreign_cores_before": round(load, 2)}


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
