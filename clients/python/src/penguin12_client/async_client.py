"""`AsyncPenguin12Client`: the same client for asyncio code.

Requests and answers are :mod:`penguin12_client.wire`'s and the waiting rules
:mod:`penguin12_client.polling`'s, exactly as for the synchronous `Penguin12Client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from penguin12_client import wire
from penguin12_client.models import JobState, Ticket
from penguin12_client.polling import LongPoll, SseParser
from penguin12_client.wire import DEFAULT_BASE_URL, ClientBase, ImageInput, JobRef

__all__ = ["AsyncPenguin12Client"]


class AsyncPenguin12Client(ClientBase):
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
        self._http = httpx.AsyncClient(**self._http_options(timeout, transport))

    async def __aenter__(self) -> AsyncPenguin12Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self, image: ImageInput, *, filename: str | None = None, callback_url: str | None = None
    ) -> Ticket:
        name, data, content_type = wire.read_image(image, filename)
        response = await self._http.post(
            self.base_url + "/v1/infer",
            files={"file": (name, data, content_type)},
            data=wire.form_fields(callback_url),
        )
        return self._remember(wire.ticket_from(response))

    async def submit_url(self, url: str, *, callback_url: str | None = None) -> Ticket:
        response = await self._http.post(
            self.base_url + "/v1/infer", data=wire.form_fields(callback_url, url=url)
        )
        return self._remember(wire.ticket_from(response))

    async def status(self, job: JobRef) -> JobState:
        return wire.state_from(await self._http.get(self.status_url(job)))

    async def wait(self, job: JobRef, timeout: float = 120.0) -> JobState:  # noqa: ASYNC109
        poll = LongPoll(self._id(job), timeout, final_only=True)
        url = self.status_url(job)
        state = await self.status(job)
        while not state.finished:
            params, http_timeout = poll.request(state)
            new = wire.state_from(await self._http.get(url, params=params, timeout=http_timeout))
            if pause := poll.pause(state, new):
                await asyncio.sleep(pause)
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
                raise wire.api_error(response)
            parser = SseParser()
            async for line in response.aiter_lines():
                state = parser.feed(line)
                if state is not None:
                    yield state
                    if state.finished:
                        return
