"""Run a real ``redis-server`` as a local process (no container engine here).

Used by ``make run`` (detached) and by the pytest fixtures (one server per session on a
free port). A fresh CI machine has no Redis, so :func:`ensure_redis_server` installs
Debian's package with apt-get when the binary is missing (CI runs as root).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from penguin12_devstack.install import ensure_debian_program
from penguin12_devstack.process import ManagedProcess
from penguin12_devstack.readiness import wait_until_ready

__all__ = ["PID_FILE", "RedisServer", "ensure_redis_server", "start_redis", "wait_redis_ready"]

PID_FILE = "redis.pid"


def ensure_redis_server() -> str:
    """Return the path of ``redis-server``, installing Debian's package if it is missing.

    A fresh CI machine lacks it and nothing else would install it. The machine images here
    block service start-up in package scripts (``policy-rc.d``), so no system-wide server on
    port 6379 is left running.
    """
    return ensure_debian_program("redis-server", "redis-server")


@dataclass
class RedisServer:
    """A running (or already stopped) local Redis; ``stop()`` is safe to call twice."""

    url: str
    server: ManagedProcess

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.server.process

    @property
    def data_dir(self) -> Path:
        return self.server.run_dir

    @property
    def log_file(self) -> Path:
        return self.server.log_file

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Redis flushes its AOF and exits), wait ``timeout`` s, then SIGKILL."""
        self.server.stop(timeout)

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
    server = ManagedProcess.start(
        "redis-server",
        cmd,
        run_dir=data_dir,
        pid_name=PID_FILE,
        log_file=log_file,
        detach=detach,
    )
    return RedisServer(url=f"redis://127.0.0.1:{port}", server=server)


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

    def ping() -> object | None:
        try:
            return None if client.ping() else "no PONG"
        except redis.RedisError as exc:  # ConnectionError, BusyLoadingError, ...
            return exc

    try:
        wait_until_ready(
            ping,
            what=f"redis-server at {url}",
            timeout=timeout,
            process=process,
            log_file=log_file,
            interval=0.05,
        )
    finally:
        client.close()
