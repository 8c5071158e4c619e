"""The local stack's processes as `make run` left them: pid files, signals, `up`, readiness.

Chaos finds each component by the pid file the devstack wrote (never by process name), signals
it, and asks the devstack to start what is missing. Where those files live, which ports the
workers answer on and what counts as alive are the devstack's rules, so they come from
`penguin12_devstack` rather than being copied here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from chaos.config import PREPROCESSOR, PROVENANCE, ROOT
from penguin12_devstack.kafka import cluster_pid_files
from penguin12_devstack.process import pid_alive
from penguin12_devstack.services import PID_FILE
from penguin12_devstack.stack import KAFKA_CLUSTER_DIR, RUN, Ports, kafka_broker_count


def pid_file(component: str) -> Path:
    if component in ("kafka", "redis"):
        return RUN / "data" / component / f"{component}.pid"
    if component.startswith("kafka-"):  # kafka-controller, kafka-broker-<id> (a cluster)
        node = component.removeprefix("kafka-")
        return cluster_pid_files(KAFKA_CLUSTER_DIR, kafka_broker_count())[node]
    return RUN / "services" / component / PID_FILE


def read_pid(component: str) -> int | None:
    """The live pid of a component, or None when it is not running."""
    try:
        pid = int(pid_file(component).read_text().strip())
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid_alive(pid) else None


def signal_component(component: str, sig: signal.Signals) -> int:
    pid = read_pid(component)
    if pid is None:
        raise RuntimeError(f"{component} is not running (no live pid in {pid_file(component)})")
    os.kill(pid, sig)
    return pid


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def devstack_up(log: Path) -> float:
    """`python -m penguin12_devstack up`: starts only what is missing, waits until ready."""
    started = time.monotonic()
    with open(log, "a") as out:
        out.write(f"\n=== up at {time.strftime('%H:%M:%S')}\n")
        out.flush()
        result = subprocess.run(
            [sys.executable, "-m", "penguin12_devstack", "up"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"`penguin12_devstack up` failed ({result.returncode}); see {log}")
    return time.monotonic() - started


def _service_names() -> list[str]:
    services = RUN / "services"
    return sorted(d.name for d in services.iterdir()) if services.is_dir() else []


def components() -> list[str]:
    brokers = kafka_broker_count()
    if brokers > 1:
        kafka = ["kafka-controller", *(f"kafka-broker-{i}" for i in range(1, brokers + 1))]
    else:
        kafka = ["kafka"]
    return [*kafka, "redis", *_service_names()]


def readiness_urls() -> dict[str, str]:
    ports = Ports()
    urls = {
        "preprocessor": f"{PREPROCESSOR}/readyz",
        "provenance": f"{PROVENANCE}/readyz",
        "classifier": f"http://127.0.0.1:{ports.classifier}/readyz",
    }
    for name in _service_names():
        if name.startswith("feature_extractor-"):
            index = int(name.rsplit("-", 1)[1])
            urls[name] = f"http://127.0.0.1:{ports.feature_extractor_base + index}/readyz"
    return urls


def all_ready(client: httpx.Client) -> dict[str, bool]:
    out = {}
    for name, url in readiness_urls().items():
        try:
            out[name] = client.get(url, timeout=3).status_code == 200
        except httpx.HTTPError:
            out[name] = False
    return out
