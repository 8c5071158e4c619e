"""Waiting until a freshly started child serves: one polling loop for every local server.

Kafka, Redis, Prometheus, the trace receiver and the four services all start in the
background and become usable some seconds later. Each has its own probe (a metadata request,
PING, an HTTP readiness URL); the loop around it is this one, which also fails at once, with
the server's log, when the child dies instead of becoming ready.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

__all__ = ["Probe", "http_ok", "log_tail", "wait_http_ready", "wait_until_ready"]

# Returns None once the server is ready, else what it is still waiting for (shown at timeout).
Probe = Callable[[], object | None]


def wait_until_ready(
    probe: Probe,
    *,
    what: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``probe`` until it returns None.

    Raises ``RuntimeError`` at once if ``process`` has exited and ``TimeoutError`` at the
    deadline; both carry the tail of ``log_file`` when given.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {process.returncode} before it was ready"
                + log_tail(log_file)
            )
        waiting_for = probe()
        if waiting_for is None:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{what} not ready after {timeout:.1f}s ({waiting_for})" + log_tail(log_file)
            )
        time.sleep(interval)


def http_ok(url: str, timeout: float = 2.0, *, any_status: bool = False) -> bool:
    """Whether ``url`` answers 200 (with ``any_status``: answers at all, even 4xx/5xx)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return any_status
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_http_ready(
    url: str,
    timeout: float,
    log_file: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
    *,
    any_status: bool = False,
    interval: float = 0.25,
) -> None:
    """Poll a readiness URL until it answers 200 (see :func:`http_ok` for ``any_status``)."""
    wait_until_ready(
        lambda: None if http_ok(url, any_status=any_status) else "no answer yet",
        what=f"the server of {url}",
        timeout=timeout,
        process=process,
        log_file=log_file,
        interval=interval,
    )


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
