"""Which addresses and URLs outbound requests may reach, checked before any connection is made
(and again, per connection, by `penguin12.ssrf.connections`)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass, field

import httpx

from penguin12.settings import DEFAULT_ALLOWED_PORTS, UrlPolicySettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("penguin12.ssrf")
# httpx logs every request line, full URL and query string included, at INFO: a client's token in
# an image or callback URL would land in the logs. Our own lines use `redact`.
logging.getLogger("httpx").setLevel(logging.WARNING)

MAX_URL_LENGTH = 2048
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


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

    @classmethod
    def from_settings(cls, settings: UrlPolicySettings) -> UrlPolicy:
        """The policy ``PENGUIN12_ALLOW_PRIVATE_URLS`` and ``PENGUIN12_URL_ALLOWED_*`` describe."""
        networks = tuple(
            ipaddress.ip_network(n.strip(), strict=False)
            for n in settings.url_allowed_networks.split(",")
            if n.strip()
        )
        return cls(
            allow_private=settings.allow_private_urls,
            allowed_networks=networks,
            allowed_ports=parse_ports(settings.url_allowed_ports),
        )

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


def _port(parsed: httpx.URL) -> int:
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def redact(url: str) -> str:
    """The URL without credentials, query or fragment (they may hold secrets): for logs."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "<invalid url>"
    port = f":{parsed.port}" if parsed.port else ""
    path = parsed.path if len(parsed.path) <= 80 else parsed.path[:77] + "..."
    return f"{parsed.scheme}://{parsed.host}{port}{path}" + ("?…" if parsed.query else "")
