"""Upload bodies held to their limits as they arrive, before anything is parsed or spooled.

Starlette's form parser spools every file part to disk in full, and accepts up to 1000 parts,
before a route sees any of it; checking the size in the route is too late (a 60 MB part used to
reach the handler). This pure ASGI middleware sits in front of the upload routes and:

- answers 413 at once when ``Content-Length`` is over the route's limit, reading nothing;
- counts bytes as they stream in (chunked bodies too) and stops at the first chunk past the
  limit: the parser, and so the disk, never sees a byte beyond it;
- counts the multipart parts as they stream in (by their boundary) and stops at the first one
  too many, or the first part larger than one file may be.

Every refusal is a JSON ``{"detail": ...}`` 413 that says which limit and what to do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("penguin12.preprocessor.upload_limits")

# Room for the multipart framing around a file: boundaries, part headers (a long file name),
# and the small text fields (`url`, `callback_url`).
FORM_OVERHEAD_BYTES = 64 * 1024
PART_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class BodyLimit:
    """What one upload route accepts: body bytes in all, multipart parts, bytes per part."""

    max_bytes: int
    max_parts: int
    max_part_bytes: int
    what: str  # for messages: "one image", "a batch request"
    advice: str  # what to do instead


class UploadRefused(HTTPException):
    """Raised from ``receive`` mid-stream; FastAPI renders it as its usual JSON error."""

    def __init__(self, detail: str):
        super().__init__(status_code=413, detail=detail, headers={"Connection": "close"})


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


class _PartCounter:
    """Finds multipart delimiters in a stream of chunks: parts so far and the current one's size."""

    def __init__(self, boundary: bytes, limit: BodyLimit):
        self._delimiter = b"\r\n--" + boundary
        self._limit = limit
        # The first delimiter has no CRLF before it; pretend it had.
        self._tail = b"\r\n"
        self.delimiters = 0
        self._current = 0  # bytes since the last delimiter

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        start, found = 0, False
        while (index := data.find(self._delimiter, start)) != -1:
            self.delimiters += 1
            start = index + len(self._delimiter)
            found = True
        # N parts have N + 1 delimiters (the last one closes the form).
        if self.delimiters > self._limit.max_parts + 1:
            raise UploadRefused(
                f"The form has more than {self._limit.max_parts} parts; "
                f"{self._limit.what} may have at most {self._limit.max_parts}. "
                f"{self._limit.advice}"
            )
        self._current = len(data) - start if found else self._current + len(chunk)
        if self._current > self._limit.max_part_bytes:
            raise UploadRefused(
                f"A part of the form is larger than the "
                f"{_mib(self._limit.max_part_bytes - PART_HEADER_BYTES)} limit for one file "
                f"(stopped reading after {self._current:,} bytes of it). {self._limit.advice}"
            )
        self._tail = data[-(len(self._delimiter) - 1) :]


class UploadLimits:
    """Pure ASGI middleware: the body limits of ``limits`` (path -> limit) on POST requests."""

    def __init__(self, app: ASGIApp, limits: dict[str, BodyLimit]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = (
            self.limits.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if limit is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit.max_bytes:
            log.info("refused a %s-byte body on %s before reading it", declared, scope["path"])
            await _refuse(
                send,
                f"The request body is {int(declared):,} bytes; {limit.what} may send at most "
                f"{_mib(limit.max_bytes)}. Nothing was read. {limit.advice}",
            )
            return
        counter = _counter(headers.get("content-type", ""), limit)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                received += len(body)
                if received > limit.max_bytes:
                    raise UploadRefused(
                        f"The request body is larger than {_mib(limit.max_bytes)}, the most "
                        f"{limit.what} may send (stopped reading after {received:,} bytes). "
                        f"{limit.advice}"
                    )
                if counter is not None:
                    counter.feed(body)
            return message

        await self.app(scope, limited_receive, send)


def _counter(content_type: str, limit: BodyLimit) -> _PartCounter | None:
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return _PartCounter(value.strip('"').encode("latin-1", "replace"), limit)
    return None


async def _refuse(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
