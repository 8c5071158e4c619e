"""Getting the programs the local stack runs, on a machine that has only package registries.

redis-server and Prometheus come from Debian's packages (apt-get, as CI runs as root), the
Kafka jars from Maven Central, Jaeger and the OTel Collector from Go modules. What they share
is here: the apt-get install, a lock so that concurrent sessions install once, and a runner
for the build tools that never hangs and never raises on a failed tool.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["ensure_debian_program", "executable", "file_lock", "run_tool"]

_APT_TIMEOUT_S = 600.0


def ensure_debian_program(
    program: str, package: str, *, after_install: Callable[[], None] | None = None
) -> str:
    """The path of ``program``, installing Debian's ``package`` with apt-get if it is missing.

    ``apt-get update`` runs only if the first install fails (a fresh machine may have stale or
    empty package lists). ``after_install`` runs once the package is newly installed.
    """
    found = _find(program)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(f"{program} is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_lock = ["-o", "DPkg::Lock::Timeout=300"]  # another session may be installing too
    install = [apt, *wait_lock, "install", "-y", "--no-install-recommends", package]
    res = run_tool(install, env, _APT_TIMEOUT_S)
    if res.returncode != 0:
        run_tool([apt, *wait_lock, "update"], env, _APT_TIMEOUT_S)
        res = run_tool(install, env, _APT_TIMEOUT_S)
    found = _find(program)
    if res.returncode != 0 or not found:
        raise RuntimeError(
            f"apt-get install {package} failed ({res.returncode}):\n"
            f"{(res.stdout + res.stderr)[-4000:]}"
        )
    if after_install is not None:
        after_install()
    return found


def run_tool(
    cmd: Sequence[str], env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an installer or build tool; a timeout comes back as exit code 124, not an exception."""
    try:
        return subprocess.run(
            list(cmd),
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(list(cmd), 124, "", f"timed out after {exc.timeout}s")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise installs across processes (a test session and `make run` may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def executable(path: str) -> str | None:
    """``path`` if it is an executable file (programs outside ``PATH``), else None."""
    return path if os.access(path, os.X_OK) else None


def _find(program: str) -> str | None:
    return shutil.which(program) or executable(f"/usr/bin/{program}")
