"""Downloading what a client's URL points to: within a size limit and one deadline for the whole
fetch, every redirect checked like the first URL."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urljoin

import httpx

from penguin12.ssrf.connections import async_guarded_client
from penguin12.ssrf.policy import UrlFetchFailed, UrlPolicy, parse_url, redact

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


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


def fetch(url: str, policy: UrlPolicy, **options: Any) -> bytes:
    """`fetch_async` (same options) for synchronous callers (scripts, tests); never call it on an
    event loop."""
    return asyncio.run(fetch_async(url, policy, **options))


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
