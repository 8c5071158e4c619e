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
- environment proxies are ignored (``trust_env=False``).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpcore
import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UrlSettings(BaseSettings):
    """``PENGUIN12_ALLOW_PRIVATE_URLS`` and ``PENGUIN12_URL_ALLOWED_NETWORKS`` (comma-separated CIDRs)."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    allow_private_urls: bool = False
    url_allowed_networks: str = ""

    def policy(self) -> UrlPolicy:
        networks = tuple(
            ipaddress.ip_network(n.strip(), strict=False)
            for n in self.url_allowed_networks.split(",")
            if n.strip()
        )
        return UrlPolicy(allow_private=self.allow_private_urls, allowed_networks=networks)


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

    def check_address(self, ip: IPAddress, host: str) -> None:
        if self.allow_private or any(ip in net for net in self.allowed_networks):
            return
        kind = _address_kind(ip)
        if kind is not None:
            shown = host if host == str(ip) else f"{host} resolves to {ip}"
            raise UrlRefused(
                f"The URL's host is not a public address ({shown}: {kind}). "
                "Only public internet addresses may be fetched."
            )

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, all checked; raises `UrlRefused` or `UrlFetchFailed`."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UrlFetchFailed(f"Could not resolve the host {host!r}.") from exc
        addresses: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            self.check_address(ip, host)
            if str(ip) not in addresses:
                addresses.append(str(ip))
        if not addresses:
            raise UrlFetchFailed(f"The host {host!r} has no address.")
        return addresses


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
        raise UrlRefused(f"The {what} must start with http:// or https:// (got {url[:40]!r}).")
    if not parsed.host:
        raise UrlRefused(f"The {what} has no host name.")
    return parsed


def check_url(url: str, policy: UrlPolicy, what: str = "URL") -> str:
    """Validate the form and resolve the host now, so a client learns of a refusal at once.

    The same check runs again when the URL is fetched (addresses can change in between).
    """
    parsed = parse_url(url, what)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    policy.resolve(parsed.host, port)
    return str(parsed)


# ------------------------------------------------------------------------------ connections


class _GuardedBackend(httpcore.SyncBackend):
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
            network_backend=_GuardedBackend(policy),
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
    """GET ``url`` within ``max_bytes`` and ``timeout_s`` (total), following at most
    ``max_redirects`` redirects, each one checked like the first URL.

    Raises `UrlRefused` (not allowed) or `UrlFetchFailed` (allowed but failed; ``too_large``).
    """
    deadline = time.monotonic() + timeout_s
    current = str(parse_url(url))
    with guarded_client(policy, timeout_s, user_agent) as client:
        for _hop in range(max_redirects + 1):
            request = client.build_request("GET", current, headers={"Accept": accept})
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise UrlFetchFailed(f"Timed out fetching {_short(current)}.") from exc
            except httpx.HTTPError as exc:
                raise UrlFetchFailed(f"Could not fetch {_short(current)}: {exc}") from exc
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise UrlFetchFailed("A redirect without a Location header.")
                    current = str(parse_url(urljoin(current, location), "redirect target"))
                    continue
                if not response.is_success:
                    raise UrlFetchFailed(
                        f"The server answered {response.status_code} for {_short(current)}."
                    )
                return _read_body(response, max_bytes, deadline, current)
            finally:
                response.close()
        raise UrlFetchFailed(f"More than {max_redirects} redirects.")


def _read_body(response: httpx.Response, max_bytes: int, deadline: float, url: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise UrlFetchFailed(_too_large(int(declared), max_bytes), too_large=True)
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_bytes():  # as it arrives, so the deadline is checked often
            total += len(chunk)
            if total > max_bytes:
                raise UrlFetchFailed(_too_large(total, max_bytes), too_large=True)
            if time.monotonic() > deadline:
                raise UrlFetchFailed(f"Timed out reading {_short(url)}.")
            chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise UrlFetchFailed(f"Timed out reading {_short(url)}.") from exc
    except httpx.HTTPError as exc:
        raise UrlFetchFailed(f"Could not read {_short(url)}: {exc}") from exc
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return (
        f"The image at the URL is larger than the {limit / 2**20:.0f} MiB limit "
        f"(at least {size:,} bytes)."
    )


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def redact(url: str) -> str:
    """The URL without credentials, query or fragment (they may hold secrets): for logs."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "<invalid url>"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}" + ("?…" if parsed.query else "")


__all__ = [
    "GuardedTransport",
    "UrlFetchFailed",
    "UrlPolicy",
    "UrlRefused",
    "UrlSettings",
    "check_url",
    "fetch",
    "guarded_client",
    "parse_url",
    "redact",
]
