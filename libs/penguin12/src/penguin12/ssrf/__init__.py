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

The package's modules: `policy` (which addresses and URLs are allowed, checked before any
connection), `connections` (httpx clients whose every connection is checked again) and `fetch`
(downloading an image within a size limit and one deadline).
"""

from penguin12.ssrf.connections import (
    GuardedBackend,
    GuardedTransport,
    async_guarded_client,
    check_url_async,
    guarded_client,
)
from penguin12.ssrf.fetch import fetch, fetch_async
from penguin12.ssrf.policy import (
    UrlFetchFailed,
    UrlPolicy,
    UrlRefused,
    check_url,
    parse_ports,
    parse_url,
    redact,
)

__all__ = [
    "GuardedBackend",
    "GuardedTransport",
    "UrlFetchFailed",
    "UrlPolicy",
    "UrlRefused",
    "async_guarded_client",
    "check_url",
    "check_url_async",
    "fetch",
    "fetch_async",
    "guarded_client",
    "parse_ports",
    "parse_url",
    "redact",
]
