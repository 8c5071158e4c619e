"""CPU and memory of processes and of the whole machine, from /proc (Linux).

Every figure a benchmark publishes carries the CPU its own processes used and the CPU that *other*
processes used meanwhile (``foreign_busy_cores``): on a shared machine that says how far to trust it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


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
