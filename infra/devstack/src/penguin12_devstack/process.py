"""One way to run a local server as a child process: log file, pid file, ready wait, stop.

Kafka, Redis, Prometheus, the trace receiver and the four services are all started the same
way. A test session's servers are tied to it (SIGTERM when the session dies, stopped at
interpreter exit), so a crashed or killed session leaves no stray JVM behind. ``make run``'s
servers are detached (their own session) and found again later by the pid file each one
leaves in its working directory: ``make status`` asks whether it runs, ``make stop`` stops it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from penguin12_devstack.readiness import wait_http_ready

__all__ = [
    "HttpProcess",
    "ManagedProcess",
    "die_with_parent",
    "pid_alive",
    "pid_file_running",
    "stop_pid_file",
    "terminate_process",
]

P = TypeVar("P", bound="ManagedProcess")


@dataclass
class ManagedProcess:
    """A server started by :meth:`start`; ``stop()`` is safe to call twice."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    pid_file: Path

    @classmethod
    def start(
        cls: type[P],
        name: str,
        cmd: Sequence[str],
        *,
        run_dir: Path,
        pid_name: str,
        log_file: Path,
        detach: bool,
        env: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> P:
        """Start ``cmd`` in ``run_dir`` with stdout and stderr appended to ``log_file``.

        Its pid goes to ``run_dir/pid_name``. ``detach=True`` gives it a session of its own so
        it outlives the caller (``make run``; :func:`stop_pid_file` stops it later); otherwise
        it is SIGTERMed when the calling thread dies and stopped at interpreter exit.
        ``fields`` are a subclass's own (e.g. ``health_url``).
        """
        run_dir = Path(run_dir).resolve()
        log_file = Path(log_file).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=run_dir,
                env=None if env is None else dict(env),
                start_new_session=detach,
                preexec_fn=None if detach else die_with_parent,
            )
        pid_file = run_dir / pid_name
        pid_file.write_text(f"{proc.pid}\n")
        managed = cls(name=name, process=proc, log_file=log_file, pid_file=pid_file, **fields)
        if not detach:
            atexit.register(managed.stop)
        return managed

    @property
    def run_dir(self) -> Path:
        """The server's working directory, which holds its pid file."""
        return self.pid_file.parent

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), wait up to ``timeout`` s, then SIGKILL."""
        terminate_process(self.process, timeout)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost machine would: no clean shutdown, nothing flushed."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=30)


@dataclass
class HttpProcess(ManagedProcess):
    """A server that is ready once ``health_url`` answers 200 (or at all, with ``any_status``)."""

    health_url: str
    any_status: bool = False

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.1) -> None:
        wait_http_ready(
            self.health_url,
            timeout,
            self.log_file,
            self.process,
            any_status=self.any_status,
            interval=interval,
        )


def die_with_parent() -> None:
    """``preexec_fn``: ask Linux to SIGTERM the child when the parent thread dies.

    A test session killed with SIGKILL (CI timeout, Ctrl-C twice) then still leaves no
    stray JVM or redis-server behind. Not for detached servers.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def terminate_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM a child, wait up to ``timeout`` s for a clean exit, then SIGKILL it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def pid_file_running(pid_file: Path) -> bool:
    """Whether the process a pid file names is alive (``make run``'s "is it up?")."""
    try:
        return pid_alive(int(Path(pid_file).read_text().strip()))
    except (OSError, ValueError):
        return False


def stop_pid_file(pid_file: Path, timeout: float = 20.0) -> bool:
    """Stop a detached server (``make run``) by the pid file :meth:`ManagedProcess.start` wrote.

    The pid is only signalled if that process's working directory is still the pid
    file's directory (every server is started there), so a recycled pid is never
    killed. Returns whether a process was signalled.
    """
    pid_file = Path(pid_file)
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    signalled = False
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        cwd = None
    if cwd is not None and cwd == pid_file.parent.resolve() and pid_alive(pid):
        signalled = _terminate_pid(pid, timeout)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    return signalled


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, i.e. exited but unreaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _terminate_pid(pid: int, timeout: float) -> bool:
    """Like :func:`terminate_process` for a pid that is not our child (no ``wait``)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
