"""Starting the four Penguin12 services as local processes and waiting until they are ready."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from penguin12_devstack.process import HttpProcess

__all__ = ["PID_FILE", "SERVICE_MODULES", "ServiceProcess", "start_service"]

PID_FILE = "service.pid"

# The module ``python -m`` runs for each kind of service.
SERVICE_MODULES = {
    "preprocessor": "preprocessor",
    "provenance": "provenance",
    "feature_extractor": "feature_extractor",
    "classifier": "classifier",
}


@dataclass
class ServiceProcess(HttpProcess):
    """A service process, ready once its ``/readyz`` (``health_url``) answers 200."""

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.25) -> None:
        # A service's /readyz asks Kafka or Redis each time: a calmer poll than a bare server's.
        super().wait_ready(timeout, interval)


def start_service(
    name: str,
    *,
    kind: str,
    env: dict[str, str],
    health_url: str,
    run_dir: Path,
    log_file: Path,
    detach: bool = False,
) -> ServiceProcess:
    """Run ``python -m <module of kind>`` with ``env`` on top of ours; cwd ``run_dir`` holds its pid."""
    # A native crash (librdkafka, torch) still leaves a Python stack in the log.
    full_env = {**os.environ, "PYTHONFAULTHANDLER": "1", **env, "PYTHONUNBUFFERED": "1"}
    return ServiceProcess.start(
        name,
        [sys.executable, "-m", SERVICE_MODULES[kind]],
        run_dir=run_dir,
        pid_name=PID_FILE,
        log_file=log_file,
        detach=detach,
        env=full_env,
        health_url=health_url,
    )
