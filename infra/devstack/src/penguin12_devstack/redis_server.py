"""Run a real ``redis-server`` as a local process (no container engine here).

Used by ``make run`` (detached) and by the pytest fixtures (one server per session on a
free port). A fresh CI machine has no Redis, so :func:`ensure_redis_server` installs
Debian's package with apt-get when the binary is missing (CI runs as root).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from penguin12_devstack.ports import die_with_parent, log_tail, stop_pid_file, terminate_process

__all__ = [
    "RedisServer",
    "ensure_redis_server",
    "start_redis",
    "stop_pid_file",
    "wait_redis_ready",
]

_PID_FILE = "redis.pid"
_APT_TIMEOUT_S = 600.0


def ensure_redis_server() -> str:
    """Return the path of ``redis-server``, installing Debian's package if it is missing.

    A fresh CI machine lacks it and nothing else would install it. ``apt-get update``
    runs only if the first install fails (a fresh machine may have stale or empty
    package lists). The machine images here block service start-up in package scripts
    (``policy-rc.d``), so no system-wide server on port 6379 is left running.
    """
    found = shutil.which("redis-server") or _existing("/usr/bin/redis-server")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("redis-server is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_lock = ["-o", "DPkg::Lock::Timeout=300"]  # another session may be installing too
    install = [apt, *wait_lock, "install", "-y", "--no-install-recommends", "redis-server"]
    res = _run(install, env)
    if res.returncode != 0:
        _run([apt, *wait_lock, "update"], env)
        res = _run(install, env)
    found = shutil.which("redis-server") or _existing("/usr/bin/redis-server")
    if res.returncode != 0 or not found:
        raise RuntimeError(
            f"apt-get install redis-server failed ({res.returncode}):\n"
            f"{(res.stdout + res.stderr)[-4000:]}"
        )
    return found


@dataclass
class RedisServer:
    """A running (or already stopped) local Redis; ``stop()`` is safe to call twice."""

    url: str
    process: subprocess.Popen[bytes] | None
    data_dir: Path | None = field(default=None)
    log_file: Path | None = field(default=None)
    pid_file: Path | None = field(default=None)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Redis flushes its AOF and exits), wait ``timeout`` s, then SIGKILL."""
        if self.process is not None:
            terminate_process(self.process, timeout)
        if self.pid_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pid_file.unlink()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Block until the server answers PING (see :func:`wait_redis_ready`)."""
        wait_redis_ready(self.url, timeout, log_file=self.log_file, process=self.process)


def start_redis(
    *,
    data_dir: Path,
    log_file: Path,
    port: int,
    appendonly: bool = True,
    detach: bool = False,
    extra_args: Sequence[str] = (),
) -> RedisServer:
    """Start ``redis-server`` on 127.0.0.1:``port`` and return at once.

    Persistence is AOF only (``--save ""`` turns RDB snapshots off) in ``data_dir``, so a
    ``make run`` restart keeps the provenance data. Output goes to ``log_file``.
    ``detach=True`` puts it in its own session so it outlives the caller (stop it later
    with ``stop_pid_file(data_dir / "redis.pid")``); otherwise
    it is SIGTERMed when the calling thread dies and stopped at interpreter exit.
    ``extra_args`` are more ``redis-server`` options (e.g. ``--requirepass``, ``--tls-port``).
    """
    data_dir = Path(data_dir).resolve()
    log_file = Path(log_file).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        ensure_redis_server(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes" if appendonly else "no",
        "--save",
        "",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        "",
        *extra_args,
    ]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=detach,
            preexec_fn=None if detach else die_with_parent,
        )
    pid_file = data_dir / _PID_FILE
    pid_file.write_text(f"{proc.pid}\n")
    if not detach:
        atexit.register(terminate_process, proc, 20.0)
    return RedisServer(
        url=f"redis://127.0.0.1:{port}",
        process=proc,
        data_dir=data_dir,
        log_file=log_file,
        pid_file=pid_file,
    )


def wait_redis_ready(
    url: str,
    timeout: float = 20.0,
    *,
    log_file: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll PING until Redis answers (it refuses commands while loading its AOF).

    Raises ``TimeoutError`` at the deadline and ``RuntimeError`` at once if ``process``
    has exited; both carry the tail of ``log_file`` when given.
    """
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
    deadline = time.monotonic() + timeout
    last_error: object = None
    try:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with code {process.returncode} before it was ready"
                    + log_tail(log_file)
                )
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:  # ConnectionError, BusyLoadingError, ...
                last_error = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Redis at {url} not ready after {timeout:.1f}s ({last_error})"
                    + log_tail(log_file)
                )
            time.sleep(0.05)
    finally:
        client.close()


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_APT_TIMEOUT_S,
        check=False,
    )


def _existing(path: str) -> str | None:
    return path if os.access(path, os.X_OK) else None
