"""Starting the four Penguin12 services as local processes and waiting until they are ready."""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from penguin12_devstack.ports import die_with_parent, log_tail, terminate_process

PID_FILE = "service.pid"

# Module to run, and the environment variable naming its HTTP port.
SERVICE_MODULES = {
    "preprocessor": "preprocessor",
    "provenance": "provenance",
    "feature_extractor": "feature_extractor",
    "classifier": "classifier",
}


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    health_url: str
    log_file: Path
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout: float = 20.0) -> None:
        terminate_process(self.process, timeout)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / PID_FILE).unlink()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean shutdown, nothing flushed."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=10)

    def wait_ready(self, timeout: float = 120.0) -> None:
        wait_http_ready(self.health_url, timeout, self.log_file, self.process)


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
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # A native crash (librdkafka, torch) still leaves a Python stack in the log.
    full_env = {**os.environ, "PYTHONFAULTHANDLER": "1", **env}
    full_env["PYTHONUNBUFFERED"] = "1"
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", SERVICE_MODULES[kind]],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            env=full_env,
            start_new_session=detach,
            preexec_fn=None if detach else die_with_parent,
        )
    (run_dir / PID_FILE).write_text(f"{proc.pid}\n")
    if not detach:
        atexit.register(terminate_process, proc, 20.0)
    return ServiceProcess(name, proc, health_url, log_file, run_dir, env)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_http_ready(
    url: str,
    timeout: float,
    log_file: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll a readiness URL until it answers 200; fail early, with the log tail, if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before {url} was ready"
                + log_tail(log_file)
            )
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s" + log_tail(log_file))
