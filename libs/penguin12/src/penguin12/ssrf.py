"""Outbound HTTP to addresses that clients choose (image URLs, webhook callbacks), made safe.

A URL given by a client must not make a Penguin12 service reach into its own network (SSRF): the
metadata service at 169.254.169.254, Redis on 127.0.0.1, a database on 10.0.0.5. So:

- only ``http`` and ``https`` URLs with a host name are accepted;
- the host is resolved and *every* address it resolves to must be public (not private, loopback,
  link-local, shared, multicast, reserved or unspecified, IPv4-mapped and NAT64 forms included),
  unless ``PENGUIN12_ALLOW_PRIVATE_URLS=true`` (tests and closed networks) or the address is in
  ``PENGUIN12_URL_ALLOWED_NETWORKS``;
- the check runs again *at connect time* for every connection, redirects included, and the
  connection goes to the very address that was checked, so a DNS answer that changes between the
  check and the connection (DNS rebinding) gains nothing;
- only the ports in ``PENGUIN12_URL_ALLOWED_PORTS`` (default 80, 443, 8080, 8443) may be reached
  on a public address; addresses the operator trusts explicitly (the two settings above) may use
  any port;
- environment proxies are ignored (``trust_env=False``);
- one deadline covers a whole fetch: DNS, connect, TLS, headers, every redirect and the body
  (`fetch_async`); a server that trickles its headers a byte at a time is cut off at it;
- host names are resolved on a small pool of their own (a slow DNS server cannot take the threads
  that serve health checks, decoding and Redis calls);
- refusals never show what a host name resolved to (that would map the internal network for
  whoever asks), and logs carry URLs without their query string (`redact`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpcore
import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("penguin12.ssrf")
# httpx logs every request line, full URL and query string included, at INFO: a client's token in
# an image or callback URL would land in the logs. Our own lines use `redact`.
logging.getLogger("httpx").setLevel(logging.WARNING)

MAX_URL_LENGTH = 2048
DEFAULT_ALLOWED_PORTS = "80,443,8080,8443"
# Threads that resolve host names for client-chosen URLs (getaddrinfo blocks and cannot be
# cancelled; a stuck lookup holds one of these, never a thread of the shared pool).
RESOLVER_THREADS = 16
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UrlSettings(BaseSettings):
    """``PENGUIN12_ALLOW_PRIVATE_URLS``, ``PENGUIN12_URL_ALLOWED_NETWORKS`` (comma-separated
    CIDRs) and ``PENGUIN12_URL_ALLOWED_PORTS`` (comma-separated, or ``*`` for any)."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    allow_private_urls: bool = False
    url_allowed_networks: str = ""
    url_allowed_ports: str = DEFAULT_ALLOWED_PORTS

    def policy(self) -> UrlPolicy:
        networks = tuple(
            ipaddress.ip_network(n.strip(), strict=False)
            for n in self.url_allowed_networks.split(",")
            if n.strip()
        )
        return UrlPolicy(
            allow_private=self.allow_private_urls,
            allowed_networks=networks,
            allowed_ports=parse_ports(self.url_allowed_ports),
        )


def parse_ports(text: str) -> frozenset[int] | None:
    """``"80,443"`` -> {80, 443}; ``"*"`` -> None (any port)."""
    if text.strip() == "*":
        return None
    ports = frozenset(int(p) for p in text.replace(" ", "").split(",") if p)
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise ValueError(f"not a list of ports: {text!r} (use e.g. 80,443, or * for any)")
    return ports


class UrlRefused(ValueError):
    """The URL may not be fetched: its form, scheme or address is not allowed. Safe to show."""


class UrlFetchFailed(RuntimeError):
    """The URL was allowed but fetching it failed (unreachable, timeout, error answer, too big)."""

    def __init__(self, message: str, *, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


def _address_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address, or None if it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _address_kind(ip.ipv4_mapped)
        if ip in _NAT64:
            return _address_kind(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and _address_kind(ip.sixtofour):
            return "6to4 of a non-public address"
        if ip.teredo is not None and _address_kind(ip.teredo[1]):
            return "Teredo of a non-public address"
        if ip.is_site_local:  # fec0::/10: deprecated, but still routed inside some networks
            return "site-local"
    for kind, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return kind
    if not ip.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class UrlPolicy:
    """Which addresses outbound requests may reach."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = field(default=())
    # None: any port. Applies to public addresses; explicitly trusted ones may use any port.
    allowed_ports: frozenset[int] | None = field(default=parse_ports(DEFAULT_ALLOWED_PORTS))

    def check_address(self, ip: IPAddress, host: str, port: int | None = None) -> None:
        """Refuse ``ip`` (an address of ``host``) unless it is public or explicitly allowed.

        The message names the address only when the client wrote it as the host: what a host
        *name* resolves to is never shown (it would map the internal network for whoever asks).
        """
        if self.allow_private or any(ip in net for net in self.allowed_networks):
            return
        kind = _address_kind(ip)
        literal = _same_address(host, ip)
        if kind is not None:
            if not literal:
                log.info("refused %r: resolves to %s (%s)", host, ip, kind)
            shown = f"{host} is {kind}" if literal else f"{host!r} is not a public name"
            raise UrlRefused(
                f"The URL's host is not a public address ({shown}). "
                "Only public internet addresses may be fetched."
            )
        if port is not None and self.allowed_ports is not None and port not in self.allowed_ports:
            allowed = ", ".join(str(p) for p in sorted(self.allowed_ports))
            raise UrlRefused(f"The URL's port {port} is not allowed; use one of: {allowed}.")

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, all checked; raises `UrlRefused` or `UrlFetchFailed`."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UrlFetchFailed(f"Could not resolve the host {host!r}.") from exc
        addresses: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            self.check_address(ip, host, port)
            if str(ip) not in addresses:
                addresses.append(str(ip))
        if not addresses:
            raise UrlFetchFailed(f"The host {host!r} has no address.")
        return addresses


def _same_address(host: str, ip: IPAddress) -> bool:
    """Whether ``host`` is written as an address (any form getaddrinfo accepts) equal to ``ip``."""
    try:
        return ipaddress.ip_address(host.strip("[]")) == ip
    except ValueError:
        pass
    try:  # "2130706433", "127.1", "0x7f.1": numeric forms inet_aton takes
        return ipaddress.IPv4Address(socket.inet_aton(host)) == ip
    except (OSError, ValueError):
        return False


def parse_url(url: str, what: str = "URL") -> httpx.URL:
    """Check the URL's form (scheme, host, length); raises `UrlRefused` with a readable reason."""
    url = url.strip()
    if not url:
        raise UrlRefused(f"The {what} is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"The {what} is longer than {MAX_URL_LENGTH} characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UrlRefused(f"The {what} is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise UrlRefused(
            f"The {what} must start with http:// or https:// (got {redact(url)[:40]!r})."
        )
    if not parsed.host:
        raise UrlRefused(f"The {what} has no host name.")
    return parsed


def check_url(url: str, policy: UrlPolicy, what: str = "URL") -> str:
    """Validate the form and resolve the host now, so a client learns of a refusal at once.

    The same check runs again when the URL is fetched (addresses can change in between).
    """
    parsed = parse_url(url, what)
    policy.resolve(parsed.host, _port(parsed))
    return str(parsed)


_RESOLVER = concurrent.futures.ThreadPoolExecutor(
    max_workers=RESOLVER_THREADS, thread_name_prefix="url-resolve"
)


async def check_url_async(url: str, policy: UrlPolicy, what: str = "URL") -> str:
    """`check_url` with the lookup on the resolver's own threads."""
    return await asyncio.get_running_loop().run_in_executor(_RESOLVER, check_url, url, policy, what)


def _port(parsed: httpx.URL) -> int:
    return parsed.port or (443 if parsed.scheme == "https" else 80)


# ------------------------------------------------------------------------------ connections


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
    """An `httpx.HTTPTransport` whose every TCP connection goes through the address check.

    TLS still verifies the certificate against the URL's host name (SNI uses the origin's host).
    """

    def __init__(self, policy: UrlPolicy, *, max_connections: int = 20):
        super().__init__(trust_env=False)
        # httpx builds its own pool; we replace it with one that uses the guarded backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: UrlPolicy, timeout: float, user_agent: str) -> httpx.Client:
    """A client for client-chosen URLs: guarded connections, no redirects, no proxies."""
    return httpx.Client(
        transport=GuardedTransport(policy),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )


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
    """One verifying TLS context for every fetch: building one loads the CA bundle, tens of
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
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )


async def fetch_async(
    url: str,
    policy: UrlPolicy,
    *,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int = 3,
    user_agent: str = "Penguin12/0.1 (image fetch)",
    accept: str = "image/*",
) -> bytes:
    """GET ``url`` within ``max_bytes`` and ``timeout_s`` in all (DNS, connect, headers, every
    redirect, body), following at most ``max_redirects`` redirects, each one checked like the
    first URL.

    Raises `UrlRefused` (not allowed) or `UrlFetchFailed` (allowed but failed; ``too_large``).
    """
    current = str(parse_url(url))
    try:
        async with (
            asyncio.timeout(timeout_s),
            async_guarded_client(policy, timeout_s, user_agent) as client,
        ):
            for _hop in range(max_redirects + 1):
                request = client.build_request("GET", current, headers={"Accept": accept})
                try:
                    response = await client.send(request, stream=True)
                except httpx.TimeoutException as exc:
                    raise TimeoutError from exc
                except httpx.HTTPError as exc:
                    raise UrlFetchFailed(f"Could not fetch {redact(current)}: {exc}") from exc
                try:
                    if response.status_code in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise UrlFetchFailed("A redirect without a Location header.")
                        current = str(parse_url(urljoin(current, location), "redirect target"))
                        continue
                    if not response.is_success:
                        raise UrlFetchFailed(
                            f"The server answered {response.status_code} for {redact(current)}."
                        )
                    return await _read_body(response, max_bytes, current)
                finally:
                    await response.aclose()
            raise UrlFetchFailed(f"More than {max_redirects} redirects.")
    except TimeoutError as exc:
        raise UrlFetchFailed(
            f"Timed out: {redact(current)} did not answer in full within {timeout_s:g} s."
        ) from exc


def fetch(
    url: str,
    policy: UrlPolicy,
    *,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int = 3,
    user_agent: str = "Penguin12/0.1 (image fetch)",
    accept: str = "image/*",
) -> bytes:
    """`fetch_async` for synchronous callers (scripts, tests); never call it on an event loop."""
    return asyncio.run(
        fetch_async(
            url,
            policy,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            max_redirects=max_redirects,
            user_agent=user_agent,
            accept=accept,
        )
    )


async def _read_body(response: httpx.Response, max_bytes: int, url: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise UrlFetchFailed(_too_large(int(declared), max_bytes), too_large=True)
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > max_bytes:
                raise UrlFetchFailed(_too_large(total, max_bytes), too_large=True)
            chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise TimeoutError from exc
    except httpx.HTTPError as exc:
        raise UrlFetchFailed(f"Could not read {redact(url)}: {exc}") from exc
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return (
        f"The image at the URL is larger than the {limit / 2**20:.0f} MiB limit "
        f"(at least {size:,} bytes)."
    )


def redact(url: str) -> str:
    """The URL without credentials, query or fragment (they may hold secrets): for logs."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "<invalid url>"
    port = f":{parsed.port}" if parsed.port else ""
    path = parsed.path if len(parsed.path) <= 80 else parsed.path[:77] + "..."
    return f"{parsed.scheme}://{parsed.host}{port}{path}" + ("?…" if parsed.query else "")


__all__ = [
    "GuardedBackend",
    "GuardedTransport",
    "UrlFetchFailed",
    "UrlPolicy",
    "UrlRefused",
    "UrlSettings",
    "async_guarded_client",
    "check_url",
    "check_url_async",
    "fetch",
    "fetch_async",
    "guarded_client",
    "parse_url",
    "redact",
]
