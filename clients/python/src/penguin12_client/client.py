"""`Penguin12Client` (and `AsyncPenguin12Client`): submit images, follow jobs, get verdicts.

>>> with Penguin12Client("http://127.0.0.1:8000") as client:
...     ticket = client.submit("photo.jpg")
...     state = client.wait(ticket, timeout=120)      # long-poll: no busy polling
...     state.result.prediction, state.result.confidence, state.result.demo

Status calls go to the ``status_url`` the service returned for that job. For a bare request id,
they go to ``status_base_url``; when that is not given it is ``base_url`` with port 8000 replaced
by 8001 (the local layout), or ``base_url`` itself when it has another port (a gateway).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from penguin12_client.models import (
    ApiError,
    BatchItem,
    JobState,
    Penguin12Error,
    Ticket,
    WaitTimeout,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_KEY_HEADER = "X-API-Key"
# One long-poll request waits at most this long on the server (it caps at 30 s).
LONG_POLL_S = 25.0
USER_AGENT = "penguin12-client/0.1"

ImageInput = str | os.PathLike[str] | bytes | IO[bytes]
JobRef = str | Ticket


def default_status_base(base_url: str) -> str:
    url = httpx.URL(base_url)
    if url.port == 8000:
        return str(url.copy_with(port=8001)).rstrip("/")
    return base_url.rstrip("/")


def _read_image(image: ImageInput, filename: str | None) -> tuple[str, bytes, str]:
    if isinstance(image, bytes):
        data, name = image, filename or "image"
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        data, name = path.read_bytes(), filename or path.name
    else:
        data = image.read()
        name = filename or Path(str(getattr(image, "name", "image"))).name
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, data, content_type


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, str):
            detail = json.dumps(detail if detail is not None else body)
    except ValueError:
        detail = response.text[:500] or response.reason_phrase
    retry_after = response.headers.get("Retry-After")
    return ApiError(
        response.status_code,
        detail,
        float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


def _ticket(response: httpx.Response) -> Ticket:
    if response.status_code != 202:
        raise _error(response)
    body = response.json()
    return Ticket(str(body["request_id"]), str(body["status_url"]))


def _state(response: httpx.Response) -> JobState:
    if response.status_code != 200:
        raise _error(response)
    return JobState.from_json(response.json())


def _batch(response: httpx.Response) -> list[BatchItem]:
    try:
        body = response.json()
    except ValueError:
        raise _error(response) from None
    if not isinstance(body, dict) or "jobs" not in body:
        raise _error(response)
    return [BatchItem.from_json(item) for item in body["jobs"]]


def _form(callback_url: str | None, **extra: str | None) -> dict[str, str]:
    data = {k: v for k, v in extra.items() if v is not None}
    if callback_url:
        data["callback_url"] = callback_url
    return data


class _SseParser:
    """Server-Sent Events, line by line: `feed` returns a state when a `status` event ends."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> JobState | None:
        if line == "":
            event, data = self._event, self._data
            self._event, self._data = "message", []
            if event == "status" and data:
                return JobState.from_json(json.loads("\n".join(data)))
            return None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


class _Base:
    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        status_base_url: str | None = None,
        api_key: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.status_base_url = (status_base_url or default_status_base(self.base_url)).rstrip("/")
        self.api_key = api_key
        self._known: dict[str, str] = {}

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            headers[API_KEY_HEADER] = self.api_key
        return headers

    def _remember(self, ticket: Ticket) -> Ticket:
        self._known[ticket.request_id] = ticket.status_url
        return ticket

    def status_url(self, job: JobRef) -> str:
        """Where ``job``'s status lives: its ticket's URL, else built from ``status_base_url``."""
        if isinstance(job, Ticket):
            return job.status_url
        return self._known.get(job) or f"{self.status_base_url}/v1/status/{job}"

    @staticmethod
    def _id(job: JobRef) -> str:
        return job.request_id if isinstance(job, Ticket) else job


class Penguin12Client(_Base):
    """A synchronous client (thread-safe as httpx.Client is)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        status_base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(base_url, status_base_url, api_key)
        self.max_retries = max_retries
        self._http = httpx.Client(timeout=timeout, headers=self._headers(), transport=transport)

    def __enter__(self) -> Penguin12Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST, retrying a 429/503 that says when to come back (bounded, at most 30 s apart)."""
        for attempt in range(self.max_retries + 1):
            response = self._http.post(self.base_url + path, **kwargs)
            retry_after = response.headers.get("Retry-After", "")
            if (
                response.status_code in (429, 503)
                and retry_after.isdigit()
                and int(retry_after) <= 30
                and attempt < self.max_retries
            ):
                time.sleep(int(retry_after))
                continue
            return response
        raise AssertionError("unreachable")

    def submit(
        self,
        image: ImageInput,
        *,
        filename: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Ticket:
        """Upload an image (a path, bytes or a binary file); returns the job's ticket."""
        name, data, content_type = _read_image(image, filename)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._post(
            "/v1/infer",
            files={"file": (name, data, content_type)},
            data=_form(callback_url),
            headers=headers,
        )
        return self._remember(_ticket(response))

    def submit_url(self, url: str, *, callback_url: str | None = None) -> Ticket:
        """Have the service download the image at ``url`` (public addresses only)."""
        response = self._post("/v1/infer", data=_form(callback_url, url=url))
        return self._remember(_ticket(response))

    def submit_batch(
        self, images: Sequence[ImageInput], *, callback_url: str | None = None
    ) -> list[BatchItem]:
        """Several images in one request; one `BatchItem` (ticket or error) per image, in order."""
        files = []
        for image in images:
            name, data, content_type = _read_image(image, None)
            files.append(("files", (name, data, content_type)))
        items = _batch(self._post("/v1/infer/batch", files=files, data=_form(callback_url)))
        for item in items:
            if item.ticket:
                self._remember(item.ticket)
        return items

    def status(self, job: JobRef) -> JobState:
        return _state(self._http.get(self.status_url(job)))

    def wait(
        self,
        job: JobRef,
        timeout: float = 120.0,
        *,
        on_change: Callable[[JobState], None] | None = None,
    ) -> JobState:
        """Block until the job is COMPLETED or FAILED (long-poll); raises `WaitTimeout`."""
        deadline = time.monotonic() + timeout
        url = self.status_url(job)
        state = self.status(job)
        if on_change:
            on_change(state)
        while not state.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(self._id(job), timeout, state)
            wait = min(LONG_POLL_S, remaining)
            asked = time.monotonic()
            # Without a callback only the verdict matters: one request instead of one per step.
            params = {"wait": f"{wait:.1f}", "since": state.status}
            if on_change is None:
                params["until"] = "final"
            response = self._http.get(url, params=params, timeout=wait + 15)
            new = _state(response)
            if new.status != state.status:
                if on_change:
                    on_change(new)
            elif time.monotonic() - asked < min(1.0, wait / 2):
                time.sleep(min(0.5, max(remaining, 0)))  # a server without long-poll: poll gently
            state = new
        return state

    def check(
        self,
        image: ImageInput,
        timeout: float = 120.0,
        *,
        on_change: Callable[[JobState], None] | None = None,
    ) -> JobState:
        """Submit and wait: the final state of one image."""
        return self.wait(self.submit(image), timeout, on_change=on_change)

    def events(self, job: JobRef, timeout: float = 300.0) -> Iterator[JobState]:
        """Follow a job by Server-Sent Events; yields each state, ends after the final one."""
        with self._http.stream(
            "GET", self.status_url(job) + "/events", timeout=httpx.Timeout(timeout, connect=10)
        ) as response:
            if response.status_code != 200:
                response.read()
                raise _error(response)
            parser = _SseParser()
            for line in response.iter_lines():
                state = parser.feed(line)
                if state is not None:
                    yield state
                    if state.finished:
                        return

    def deliveries(self, job: JobRef) -> dict[str, Any]:
        """The webhook delivery log of a job submitted with a ``callback_url``."""
        response = self._http.get(self.status_url(job) + "/deliveries")
        if response.status_code != 200:
            raise _error(response)
        body: dict[str, Any] = response.json()
        return body


class AsyncPenguin12Client(_Base):
    """The same, for asyncio code."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        status_base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        super().__init__(base_url, status_base_url, api_key)
        self._http = httpx.AsyncClient(
            timeout=timeout, headers=self._headers(), transport=transport
        )

    async def __aenter__(self) -> AsyncPenguin12Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self, image: ImageInput, *, filename: str | None = None, callback_url: str | None = None
    ) -> Ticket:
        name, data, content_type = _read_image(image, filename)
        response = await self._http.post(
            self.base_url + "/v1/infer",
            files={"file": (name, data, content_type)},
            data=_form(callback_url),
        )
        return self._remember(_ticket(response))

    async def submit_url(self, url: str, *, callback_url: str | None = None) -> Ticket:
        response = await self._http.post(
            self.base_url + "/v1/infer", data=_form(callback_url, url=url)
        )
        return self._remember(_ticket(response))

    async def status(self, job: JobRef) -> JobState:
        return _state(await self._http.get(self.status_url(job)))

    async def wait(self, job: JobRef, timeout: float = 120.0) -> JobState:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        url = self.status_url(job)
        state = await self.status(job)
        while not state.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(self._id(job), timeout, state)
            wait = min(LONG_POLL_S, remaining)
            asked = time.monotonic()
            response = await self._http.get(
                url,
                params={"wait": f"{wait:.1f}", "since": state.status, "until": "final"},
                timeout=wait + 15,
            )
            new = _state(response)
            if new.status == state.status and time.monotonic() - asked < min(1.0, wait / 2):
                await asyncio.sleep(min(0.5, max(remaining, 0)))
            state = new
        return state

    async def check(self, image: ImageInput, timeout: float = 120.0) -> JobState:  # noqa: ASYNC109
        return await self.wait(await self.submit(image), timeout)

    async def events(
        self,
        job: JobRef,
        timeout: float = 300.0,  # noqa: ASYNC109 (a per-read timeout, as in the sync client)
    ) -> AsyncIterator[JobState]:
        async with self._http.stream(
            "GET", self.status_url(job) + "/events", timeout=httpx.Timeout(timeout, connect=10)
        ) as response:
            if response.status_code != 200:
                await response.aread()
                raise _error(response)
            parser = _SseParser()
            async for line in response.aiter_lines():
                state = parser.feed(line)
                if state is not None:
                    yield state
                    if state.finished:
                        return


__all__ = [
    "ApiError",
    "AsyncPenguin12Client",
    "Penguin12Client",
    "Penguin12Error",
    "default_status_base",
]
