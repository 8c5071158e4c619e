"""Free ports for the local servers, and a cheap "is anything listening" probe.

Test sessions start their own Kafka and Redis on ports picked at run time, so that two
sessions (or a `make run` stack left running) never collide on fixed ports.
"""

from __future__ import annotations

import contextlib
import socket

__all__ = ["free_port", "free_ports", "port_is_open"]


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
