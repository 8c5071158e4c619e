"""A lean keep-alive HTTP/1.1 client over asyncio streams, for load generation.

The load generator shares two cores with the system it measures, so it must cost little: request
bytes (multipart bodies included) are built once, and a response is parsed just enough to get its
status and body. One `HttpConn` is one TCP connection; use one per concurrent client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

BOUNDARY = "penguin12benchboundary7f3a"


def multipart_body(data: bytes, filename: str = "image.jpg") -> tuple[str, bytes]:
    """(content type, body) of a multipart form with one ``file`` field."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return (
        f"multipart/form-data; boundary={BOUNDARY}",
        head + data + f"\r\n--{BOUNDARY}--\r\n".encode(),
    )


class HttpError(RuntimeError):
    pass


class HttpConn:
    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float = 60.0,
        headers: Mapping[str, str] | None = None,
    ):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str | None = None
    ) -> tuple[int, bytes]:
        """Send one request (reconnecting once if the kept-alive connection was dropped)."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\n{self._headers}"
        )
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        raw_head = (head + "\r\n").encode()
        for attempt in (0, 1):
            if self._writer is None:
                await self._connect()
            try:
                return await asyncio.wait_for(self._exchange(raw_head, body), self.timeout_s)
            except TimeoutError:  # the server may still act on it: never send it twice
                await self.close()
                raise
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, raw_head: bytes, body: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw_head)
        if body:
            self._writer.write(body)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("connection closed by server")
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        chunked = close = False
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif key == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self._reader.readline()).strip(), 16)
                if size == 0:
                    await self._reader.readline()
                    break
                parts.append(await self._reader.readexactly(size))
                await self._reader.readline()
            payload = b"".join(parts)
        elif length is not None:
            payload = await self._reader.readexactly(length)
        else:
            payload = await self._reader.read()
            close = True
        if close:
            await self.close()
        return status, payload

    async def get_json(self, path: str) -> tuple[int, Any]:
        status, payload = await self.request("GET", path)
        return status, json.loads(payload) if payload else None
