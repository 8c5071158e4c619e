"""`Penguin12Client`: submit images, follow jobs, get verdicts (synchronous).

>>> with Penguin12Client("http://127.0.0.1:8000") as client:
...     ticket = client.submit("photo.jpg")
...     state = client.wait(ticket, timeout=120)      # long-poll: no busy polling
...     state.result.prediction, state.result.confidence, state.result.demo

Status calls go to the ``status_url`` the service returned for that job. For a bare request id,
they go to ``status_base_url``; when that is not given it is ``base_url`` with port 8000 replaced
by 8001 (the local layout), or ``base_url`` itself when it has another port (a gateway). The
asyncio twin is `penguin12_client.async_client.AsyncPenguin12Client`; both build their requests
and read the answers with :mod:`penguin12_client.wire` and follow jobs with
:mod:`penguin12_client.polling`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from penguin12_client import wire
from penguin12_client.models import BatchItem, JobState, Ticket
from penguin12_client.polling import LongPoll, SseParser
from penguin12_client.wire import DEFAULT_BASE_URL, ClientBase, ImageInput, JobRef

__all__ = ["Penguin12Client"]


class Penguin12Client(ClientBase):
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
        self._http = httpx.Client(**self._http_options(timeout, transport))

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
        name, data, content_type = wire.read_image(image, filename)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._post(
            "/v1/infer",
            files={"file": (name, data, content_type)},
            data=wire.form_fields(callback_url),
            headers=headers,
        )
        return self._remember(wire.ticket_from(response))

    def submit_url(self, url: str, *, callback_url: str | None = None) -> Ticket:
        """Have the service download the image at ``url`` (public addresses only)."""
        response = self._post("/v1/infer", data=wire.form_fields(callback_url, url=url))
        return self._remember(wire.ticket_from(response))

    def submit_batch(
        self, images: Sequence[ImageInput], *, callback_url: str | None = None
    ) -> list[BatchItem]:
        """Several images in one request; one `BatchItem` (ticket or error) per image, in order."""
        files = []
        for image in images:
            name, data, content_type = wire.read_image(image, None)
            files.append(("files", (name, data, content_type)))
        response = self._post("/v1/infer/batch", files=files, data=wire.form_fields(callback_url))
        items = wire.batch_from(response)
        for item in items:
            if item.ticket:
                self._remember(item.ticket)
        return items

    def status(self, job: JobRef) -> JobState:
        return wire.state_from(self._http.get(self.status_url(job)))

    def wait(
        self,
        job: JobRef,
        timeout: float = 120.0,
        *,
        on_change: Callable[[JobState], None] | None = None,
    ) -> JobState:
        """Block until the job is COMPLETED or FAILED (long-poll); raises `WaitTimeout`."""
        # Without a callback only the verdict matters: one request instead of one per step.
        poll = LongPoll(self._id(job), timeout, final_only=on_change is None)
        url = self.status_url(job)
        state = self.status(job)
        if on_change:
            on_change(state)
        while not state.finished:
            params, http_timeout = poll.request(state)
            new = wire.state_from(self._http.get(url, params=params, timeout=http_timeout))
            if new.status != state.status and on_change:
                on_change(new)
            if pause := poll.pause(state, new):
                time.sleep(pause)
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
                raise wire.api_error(response)
            parser = SseParser()
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
            raise wire.api_error(response)
        body: dict[str, Any] = response.json()
        return body
