"""Free ports and child-process helpers shared by the local Kafka and Redis launchers.

Test sessions start their own Kafka and Redis on ports picked at run time, so that two
sessions (or a `make run` stack left running) never collide on fixed ports; and every
server started here must be stoppable and must never outlive a crashed test session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = [
    "die_with_parent",
    "free_port",
    "free_ports",
    "log_tail",
    "pid_alive",
    "port_is_open",
    "stop_pid_file",
    "terminate_process",
]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now.

    The kernel picks it (bind to port 0); there is an unavoidable race until the caller
    binds it, which is acceptable on a developer/CI machine.
    """
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct free ports.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out the
    same port twice (which repeated :func:`free_port` calls could do).
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (cheap readiness probe)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


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


def stop_pid_file(pid_file: Path, timeout: float = 20.0) -> bool:
    """Stop a detached server (``make run``) by the pid file its launcher wrote.

    The pid is only signalled if that process's working directory is still the pid
    file's directory (both launchers start their server there), so a recycled pid is
    never killed. Returns whether a process was signalled.
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


def log_tail(log_file: Path | None, lines: int = 40) -> str:
    """The end of a server's log, for a start-up error message.

    The first ERROR/FATAL lines come first: Kafka logs its cause of death and then a
    long orderly shutdown, which would push the cause out of a plain tail.
    """
    if log_file is None:
        return ""
    try:
        text = Path(log_file).read_text(errors="replace")
    except OSError:
        return f"\n(no log at {log_file})"
    all_lines = text.splitlines()
    errors = [ln for ln in all_lines if " ERROR " in ln or " FATAL " in ln][:10]
    out = ""
    if errors:
        out += f"\n--- first error lines of {log_file} ---\n" + "\n".join(errors)
    tail = "\n".join(all_lines[-lines:])
    return out + f"\n--- last {lines} lines of {log_file} ---\n{tail}"


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


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, i.e. exited but unreaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


_pid_alive = pid_alive  # older name, still imported by callers
