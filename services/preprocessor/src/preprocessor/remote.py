"""Submissions by URL and callback URLs: checked, then fetched within limits (see penguin12.ssrf).

`POST /v1/infer` takes either a ``file`` or a ``url``. The image at a URL is downloaded here with
the upload's size limit, one deadline for the whole fetch (DNS, connect, headers, redirects and
body) and at most a few redirects, every hop resolved and checked against the private-address
and port rules; then it goes through exactly the same validation as an upload. Fetches run on the
event loop (host names are resolved on a small pool of their own), never on the thread pool that
serves health checks and Redis calls, and at most ``url_max_concurrent_fetches`` at once (503
with Retry-After beyond that). A ``callback_url`` is checked at submission too, so a client learns
at once that it will never be called, and again by provenance when the webhook is sent.

Status codes: 422 for a malformed request (both or neither of file/url, a URL that is not
http(s)), 400 for a URL that is refused (non-public address) or cannot be fetched (DNS failure,
timeout, error answer), 413 when the image at the URL is over the size limit, 503 when too many
fetches are in progress. Logs show URLs without their query string (it may carry a token).
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from fastapi import UploadFile

from penguin12.settings import UrlFetchSettings
from penguin12.ssrf import (
    UrlFetchFailed,
    UrlPolicy,
    UrlRefused,
    check_url_async,
    fetch_async,
    parse_url,
    redact,
)
from preprocessor.refusals import refuse

log = logging.getLogger("penguin12.preprocessor.remote")


class Sources(NamedTuple):
    url: str | None
    callback_url: str | None


class UrlFetcher:
    """Checks submitted URLs and downloads images, under the service's URL rules and limits
    (made once at start; the fetch slots belong to the event loop that serves requests)."""

    def __init__(self, settings: UrlFetchSettings):
        self._settings = settings
        self._policy = UrlPolicy.from_settings(settings)
        self._slots = asyncio.Semaphore(settings.url_max_concurrent_fetches)

    async def check_submission(
        self, file: UploadFile | None, url: str | None, callback_url: str | None
    ) -> Sources:
        """Exactly one image source, well-formed URLs, and a callback URL that may be called."""
        url = (url or "").strip() or None
        callback_url = (callback_url or "").strip() or None
        if file is not None and url is not None:
            raise refuse("invalid", 422, "Send either a `file` or a `url`, not both.")
        if file is None and url is None:
            raise refuse(
                "invalid", 422, "Send the image as a `file` field, or give its address in `url`."
            )
        if url is not None:
            try:
                url = str(parse_url(url, "url"))
            except UrlRefused as exc:
                raise refuse("invalid", 422, str(exc)) from exc
        if callback_url is not None:
            callback_url = await self.check_callback(callback_url)
        return Sources(url, callback_url)

    async def check_callback(self, callback_url: str) -> str:
        try:
            parse_url(callback_url, "callback_url")
        except UrlRefused as exc:
            raise refuse("invalid", 422, str(exc)) from exc
        try:
            return await check_url_async(callback_url, self._policy, "callback_url")
        except (UrlRefused, UrlFetchFailed) as exc:
            raise refuse("url_refused", 400, f"callback_url refused: {exc}") from exc

    async def download(self, url: str, max_bytes: int) -> bytes:
        """The bytes at ``url``, or an HTTPException saying plainly why not."""
        if self._slots.locked():
            raise refuse(
                "busy",
                503,
                f"The server is already downloading {self._settings.url_max_concurrent_fetches} "
                "images; nothing was queued. Retry shortly, or send the file itself.",
                {"Retry-After": "2"},
            )
        try:
            async with self._slots:
                data = await fetch_async(
                    url,
                    self._policy,
                    max_bytes=max_bytes,
                    timeout_s=self._settings.url_fetch_timeout_s,
                    max_redirects=self._settings.url_max_redirects,
                )
        except UrlRefused as exc:
            log.info("image url %s refused: %s", redact(url), exc)
            raise refuse("url_refused", 400, f"url refused: {exc}") from exc
        except UrlFetchFailed as exc:
            log.info("image url %s failed: %s", redact(url), exc)
            if exc.too_large:
                raise refuse("too_large", 413, str(exc)) from exc
            raise refuse("url_failed", 400, f"Could not download the image: {exc}") from exc
        return data
