"""The one managed-process helper every local server starts through (`make run`, the fixtures).

Real child processes: a detached server is found again and stopped by its pid file, a pid file
that names somebody else's process is never signalled, and a server that dies while starting
fails the wait at once with its log instead of at the deadline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import wait_for
from penguin12_devstack.ports import free_port
from penguin12_devstack.process import (
    HttpProcess,
    ManagedProcess,
    pid_alive,
    pid_file_running,
    stop_pid_file,
)


def _http_server(tmp_path: Path, *, detach: bool) -> HttpProcess:
    port = free_port()
    return HttpProcess.start(
        "http.server",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        run_dir=tmp_path / "server",
        pid_name="server.pid",
        log_file=tmp_path / "server.log",
        detach=detach,
        health_url=f"http://127.0.0.1:{port}/",
    )


def test_a_detached_server_is_found_and_stopped_by_its_pid_file(tmp_path: Path) -> None:
    server = _http_server(tmp_path, detach=True)
    try:
        server.wait_ready(60)
        pid_file = tmp_path / "server" / "server.pid"
        assert pid_file.read_text().strip() == str(server.process.pid)
        assert pid_file_running(pid_file)

        assert stop_pid_file(pid_file, timeout=20)
        wait_for(lambda: server.process.poll() is not None, 30, 0.1, "the server to exit")
        assert not pid_file.exists()
        assert not pid_file_running(pid_file)
        assert not stop_pid_file(pid_file), "a second stop found something to stop"
    finally:
        server.stop()


def test_a_pid_file_naming_another_process_is_never_signalled(tmp_path: Path) -> None:
    """A recycled pid (the number now belongs to another program) must survive `make stop`."""
    server = _http_server(tmp_path, detach=False)
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        stale = elsewhere / "server.pid"
        stale.write_text(f"{server.process.pid}\n")

        assert not stop_pid_file(stale, timeout=5)
        assert server.alive and pid_alive(server.process.pid)
        assert not stale.exists(), "the stale pid file was kept"
    finally:
        server.stop()
    assert not server.alive
    assert not server.pid_file.exists()


def test_a_server_that_dies_while_starting_fails_the_wait_at_once_with_its_log(
    tmp_path: Path,
) -> None:
    crashing = HttpProcess.start(
        "crashing",
        [sys.executable, "-c", "import sys; print('[x] ERROR no config here'); sys.exit(3)"],
        run_dir=tmp_path / "crashing",
        pid_name="crashing.pid",
        log_file=tmp_path / "crashing.log",
        detach=False,
        health_url=f"http://127.0.0.1:{free_port()}/",
    )
    # A RuntimeError (not the TimeoutError of the 10-minute deadline) names the exit and the cause.
    with pytest.raises(RuntimeError, match="exited with code 3") as failure:
        crashing.wait_ready(600)
    assert "ERROR no config here" in str(failure.value)


def test_a_killed_server_is_not_running(tmp_path: Path) -> None:
    sleeper = ManagedProcess.start(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(600)"],
        run_dir=tmp_path / "sleeper",
        pid_name="sleeper.pid",
        log_file=tmp_path / "sleeper.log",
        detach=False,
    )
    assert pid_file_running(sleeper.pid_file)
    sleeper.kill()
    assert sleeper.process.returncode == -9
    assert not pid_file_running(sleeper.pid_file)
    sleeper.stop()  # safe after a kill: only the pid file goes
    assert not sleeper.pid_file.exists()
