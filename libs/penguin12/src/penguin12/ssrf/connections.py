"""httpx clients for client-chosen URLs whose every TCP connection is checked (DNS rebinding gains
nothing: the connection goes to the very address that was checked), sync and asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from penguin12.ssrf.policy import UrlPolicy, check_url

# Threads that resolve host names for client-chosen URLs (getaddrinfo blocks and cannot be
# cancelled; a stuck lookup holds one of these, never a thread of the shared pool).
RESOLVER_THREADS = 16

_RESOLVER = concurrent.futures.ThreadPoolExecutor(
    max_workers=RESOLVER_THREADS, thread_name_prefix="url-resolve"
)


async def check_url_async(url: str, policy: UrlPolicy, what: str = "URL") -> str:
    """`check_url` with the lookup on the resolver's own threads."""
    return await asyncio.get_running_loop().run_in_executor(_RESOLVER, check_url, url, policy, what)


class GuardedBackend(httpcore.SyncBackend):
    """Resolve, check every address, then connect to a checked address (never re-resolve)."""

    def __init__(self, policy: UrlPolicy):
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._policy.resolve(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


class GuardedTransport(httpx.HTTPTransport):
    """An `httpx.HTTPTransport` whose every TCP connection goes through the address check
    (``backend``: a `GuardedBackend`, or a subclass that adds to it).

    TLS still verifies the certificate against the URL's host name (SNI uses the origin's host).
    """

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        max_connections: int = 20,
        backend: GuardedBackend | None = None,
    ):
        super().__init__(trust_env=False)
        # httpx builds its own pool; we replace it with one that uses the guarded backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_tls_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=backend or GuardedBackend(policy),
        )


def guarded_client(
    policy: UrlPolicy,
    timeout: float,
    user_agent: str,
    *,
    max_connections: int = 20,
    backend: GuardedBackend | None = None,
) -> httpx.Client:
    """A client for client-chosen URLs: guarded connections, no redirects, no proxies."""
    transport = GuardedTransport(policy, max_connections=max_connections, backend=backend)
    return httpx.Client(transport=transport, **_client_options(timeout, user_agent))


def _client_options(timeout: float, user_agent: str) -> dict[str, Any]:
    """What the sync and the asyncio clients share: per-step timeouts, no redirects, no proxies."""
    return {
        "timeout": httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        "follow_redirects": False,
        "trust_env": False,
        "headers": {"User-Agent": user_agent},
    }


class _AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """`GuardedBackend` for asyncio: the lookup runs on the resolver's threads, then connects
    to a checked address with anyio (cancellable, so the overall deadline can stop it)."""

    def __init__(self, policy: UrlPolicy):
        self._policy = policy
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(_RESOLVER, self._policy.resolve, host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not reachable through client URLs.")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: building one loads the CA bundle, tens of
    milliseconds of CPU that would otherwise stall the event loop on each fetch."""
    return httpx.create_ssl_context(trust_env=False)


def async_guarded_client(policy: UrlPolicy, timeout: float, user_agent: str) -> httpx.AsyncClient:
    """The asyncio twin of `guarded_client`. ``timeout`` bounds each step; wrap the whole call
    in ``asyncio.timeout`` for an overall deadline (as `fetch_async` does)."""
    tls = _tls_context()
    transport = httpx.AsyncHTTPTransport(verify=tls, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=20,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=_AsyncGuardedBackend(policy),
    )
    return httpx.AsyncClient(transport=transport, **_client_options(timeout, user_agent))
