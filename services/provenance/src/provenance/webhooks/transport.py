"""Webhook connections: SSRF-guarded (`penguin12.ssrf`), and every socket operation of an
attempt held to one total deadline, so a receiver that trickles its answer a byte at a time
cannot hold a delivery thread past it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx

from penguin12.ssrf import GuardedBackend, UrlPolicy, guarded_client

USER_AGENT = "Penguin12-Webhooks/0.1"

_deadline = threading.local()


@contextlib.contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """Within this block, this thread's connections end ``seconds`` from now at the latest."""
    _deadline.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.at = None


def _time_left(timeout: float | None) -> float | None:
    """``timeout``, shortened to what is left of this thread's delivery deadline."""
    end: float | None = getattr(_deadline, "at", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the attempt's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake waits at most until the deadline."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, _time_left(timeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(GuardedBackend):
    """The SSRF-guarded connections, under the attempt's deadline."""

    def connect_tcp(  # type: ignore[override]  # httpcore passes these by keyword
        self, host: str, port: int, timeout: float | None = None, **options: Any
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(super().connect_tcp(host, port, _time_left(timeout), **options))


def delivery_client(policy: UrlPolicy, timeout_s: float, connections: int) -> httpx.Client:
    """The one client all delivery threads share (up to ``connections`` at once)."""
    return guarded_client(
        policy,
        timeout_s,
        USER_AGENT,
        max_connections=connections,
        backend=_DeadlineBackend(policy),
    )


def receiver_of(url: str) -> str:
    """Who a delivery goes to, for the per-receiver limit: scheme, host and port."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return url
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}"
