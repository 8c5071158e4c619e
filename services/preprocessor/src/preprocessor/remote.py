"""Submissions by URL and callback URLs: checked, then fetched within limits (see penguin12.ssrf).

`POST /v1/infer` takes either a ``file`` or a ``url``. The image at a URL is downloaded here with
the upload's size limit, one deadline for the whole fetch (DNS, connect, headers, redirects and
body) and at most a few redirects, every hop resolved and checked against the private-address
and port rules; then it goes through exactly the same validation as an upload. Fetches run on the
event loop (host names are resolved on a small pool of their own), never on the thread pool that
serves health checks and Redis calls, and at most ``url_max_concurrent_fetches`` at once (503
with Retry-After beyond that). A ``callback_url`` is checked at submission too, so a client learns at once that it
will never be called, and again by provenance when the webhook is sent.

Status codes: 422 for a malformed request (both or neither of file/url, a URL that is not
http(s)), 400 for a URL that is refused (non-public address) or cannot be fetched (DNS failure,
timeout, error answer), 413 when the image at the URL is over the size limit, 503 when too many
fetches are in progress. Logs show URLs without their query string (it may carry a token).
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from typing import NamedTuple

from fastapi import HTTPException, UploadFile
from pydantic import Field

from penguin12.metrics import JOBS_SUBMITTED
from penguin12.ssrf import (
    UrlFetchFailed,
    UrlRefused,
    UrlSettings,
    check_url_async,
    fetch_async,
    parse_url,
    redact,
)

log = logging.getLogger("penguin12.preprocessor.remote")


class RemoteSettings(UrlSettings):
    """The address and port rules (`penguin12.ssrf.UrlSettings`) and the fetch limits."""

    # One deadline for the whole fetch: DNS, connect, headers, every redirect and the body.
    url_fetch_timeout_s: float = Field(default=10.0, gt=0)
    url_max_redirects: int = Field(default=3, ge=0)
    # Downloads in progress at once (each may hold up to the upload limit in memory).
    url_max_concurrent_fetches: int = Field(default=16, ge=1)


@lru_cache(maxsize=1)
def remote_settings() -> RemoteSettings:
    return RemoteSettings()


class Sources(NamedTuple):
    url: str | None
    callback_url: str | None


@lru_cache(maxsize=1)
def _fetch_slots() -> asyncio.Semaphore:
    return asyncio.Semaphore(remote_settings().url_max_concurrent_fetches)


def _reject(
    outcome: str, code: int, detail: str, headers: dict[str, str] | None = None
) -> HTTPException:
    JOBS_SUBMITTED.labels(outcome=outcome).inc()
    return HTTPException(status_code=code, detail=detail, headers=headers)


async def check_submission(
    file: UploadFile | None, url: str | None, callback_url: str | None
) -> Sources:
    """Exactly one image source, well-formed URLs, and a callback URL that may be called."""
    url = (url or "").strip() or None
    callback_url = (callback_url or "").strip() or None
    if file is not None and url is not None:
        raise _reject("invalid", 422, "Send either a `file` or a `url`, not both.")
    if file is None and url is None:
        raise _reject(
            "invalid", 422, "Send the image as a `file` field, or give its address in `url`."
        )
    if url is not None:
        try:
            url = str(parse_url(url, "url"))
        except UrlRefused as exc:
            raise _reject("invalid", 422, str(exc)) from exc
    if callback_url is not None:
        callback_url = await check_callback(callback_url)
    return Sources(url, callback_url)


async def check_callback(callback_url: str) -> str:
    policy = remote_settings().policy()
    try:
        parse_url(callback_url, "callback_url")
    except UrlRefused as exc:
        raise _reject("invalid", 422, str(exc)) from exc
    try:
        return await check_url_async(callback_url, policy, "callback_url")
    except UrlRefused as exc:
        raise _reject("url_refused", 400, f"callback_url refused: {exc}") from exc
    except UrlFetchFailed as exc:
        raise _reject("url_refused", 400, f"callback_url refused: {exc}") from exc


async def download(url: str, max_bytes: int) -> bytes:
    """The bytes at ``url``, or an HTTPException saying plainly why not."""
    settings = remote_settings()
    slots = _fetch_slots()
    if slots.locked():
        raise _reject(
            "busy",
            503,
            f"The server is already downloading {settings.url_max_concurrent_fetches} images; "
            "nothing was queued. Retry shortly, or send the file itself.",
            {"Retry-After": "2"},
        )
    try:
        async with slots:
            data = await fetch_async(
                url,
                settings.policy(),
                max_bytes=max_bytes,
                timeout_s=settings.url_fetch_timeout_s,
                max_redirects=settings.url_max_redirects,
            )
    except UrlRefused as exc:
        log.info("image url %s refused: %s", redact(url), exc)
        raise _reject("url_refused", 400, f"url refused: {exc}") from exc
    except UrlFetchFailed as exc:
        log.info("image url %s failed: %s", redact(url), exc)
        if exc.too_large:
            raise _reject("too_large", 413, str(exc)) from exc
        raise _reject("url_failed", 400, f"Could not download the image: {exc}") from exc
    return data
