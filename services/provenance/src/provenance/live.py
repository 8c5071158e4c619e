"""Live status: long-poll (`GET /v1/status/{id}?wait=N`) and Server-Sent Events.

Waiting costs no polling of Redis: `JobStore.apply` publishes every applied change on
``penguin12:job-events:<request_id>``, and one pattern subscription per process wakes the requests
waiting on that job. Each waiter also re-reads the state every few seconds, so a notification lost
while the subscription reconnects costs a little latency, never a stuck request.

The `wait` parameters themselves are on `GET /v1/status/{id}` (provenance/api.py hands over to
`long_poll`); this module adds `GET /v1/status/{id}/events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import StreamingResponse
from prometheus_client import Gauge
from starlette.concurrency import run_in_threadpool

from penguin12.schemas import TERMINAL_STATUSES, ErrorResponse, JobState, JobStatus
from penguin12.state import EVENTS_PREFIX, JobStore, redis_options
from penguin12.web import guard_public_route, owner_filter
from provenance.settings import ProvenanceSettings

log = logging.getLogger("penguin12.provenance.live")

router = APIRouter(prefix="/v1", tags=["status"], dependencies=[Depends(guard_public_route)])

# Long-poll waits at most this long, whatever the client asks.
MAX_WAIT_S = 30.0
# A waiter re-reads the state this often even without a notification.
RECHECK_S = 2.0
# An SSE stream sends a comment this often so proxies keep it open, and ends after SSE_MAX_S (the
# browser's EventSource reconnects by itself; a stream must not hold up a shutdown for long).
SSE_KEEPALIVE_S = 15.0
SSE_MAX_S = 300.0

WAITERS = Gauge(
    "penguin12_status_waiters",
    "Requests waiting for a job to change (long-poll and Server-Sent Events).",
)

_FINAL = frozenset(status.value for status in TERMINAL_STATUSES)

RequestId = Annotated[str, Path(min_length=1, max_length=64, description="From the 202 answer.")]


class StatusNotifier:
    """One Redis pattern subscription per process, fanned out to the waiting requests."""

    def __init__(self, redis_url: str, options: dict[str, Any] | None = None):
        self._url = redis_url
        self._options = options or {}
        # Per job: the events to set on any change, and those to set only on a final status.
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._final_waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="status-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def watch(self, request_id: str, *, final_only: bool = False) -> Iterator[asyncio.Event]:
        """An event set whenever ``request_id`` changes (with ``final_only``: only when it
        becomes COMPLETED or FAILED, so a `until=final` long-poll is not woken, and does not
        re-read the state, at every step). Register before reading the state."""
        self.start()
        event = asyncio.Event()
        table = self._final_waiters if final_only else self._waiters
        table[request_id].add(event)
        WAITERS.inc()
        try:
            yield event
        finally:
            WAITERS.dec()
            waiters = table.get(request_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del table[request_id]

    def _wake(self, request_id: str | None = None, status: str | None = None) -> None:
        """Wake the waiters of ``request_id`` (None: of every job) for a change to ``status``
        (None: unknown, which wakes every waiter)."""
        final = status is None or status in _FINAL
        for table in (self._waiters, self._final_waiters) if final else (self._waiters,):
            targets = table.values() if request_id is None else [table.get(request_id)]
            for waiters in targets:
                for event in waiters or ():
                    event.set()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2, **self._options)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(EVENTS_PREFIX + "*")
                backoff = 0.2
                self._wake()  # changes may have happened while we were not subscribed
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message and message.get("type") == "pmessage":
                        channel, data = message["channel"], message.get("data")
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        if isinstance(data, bytes):
                            data = data.decode(errors="replace")
                        # The message is the status the job moved to (penguin12.state._APPLY).
                        status = data if isinstance(data, str) else None
                        self._wake(str(channel)[len(EVENTS_PREFIX) :], status)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                log.warning("status event subscription lost (%s); retrying in %.1fs", exc, backoff)
                self._wake()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()


def get_notifier(request: Request) -> StatusNotifier:
    state = request.app.state
    notifier: StatusNotifier | None = getattr(state, "live_notifier", None)
    if notifier is None:
        settings = getattr(state, "settings", None) or ProvenanceSettings()
        notifier = StatusNotifier(settings.state_redis_url, redis_options(settings))
        state.live_notifier = notifier
    return notifier


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def _not_found(request_id: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail=f"No job with request_id {request_id!r}: it was never submitted or has expired.",
    )


def _finished(state: JobState) -> bool:
    return state.status in TERMINAL_STATUSES


async def long_poll(
    request: Request,
    request_id: str,
    wait_s: float,
    since: JobStatus | None,
    *,
    final_only: bool = False,
) -> JobState:
    """The job's state as soon as its status differs from ``since`` (default: its status now), or
    it is final, or ``wait_s`` (at most `MAX_WAIT_S`) has passed; with ``final_only``, only the
    last two count."""
    store = _store(request)
    owner = owner_filter(request)
    deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
    with get_notifier(request).watch(request_id, final_only=final_only) as changed:
        baseline = since
        while True:
            changed.clear()
            state = await run_in_threadpool(store.get_for, request_id, owner)
            if state is None:
                raise _not_found(request_id)
            if baseline is None:
                baseline = state.status
            remaining = deadline - time.monotonic()
            moved = state.status != baseline and not final_only
            if moved or _finished(state) or remaining <= 0:
                return state
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, RECHECK_S))


def _sse(state: JobState) -> bytes:
    data = state.model_dump_json(exclude_none=True)
    return f"event: status\nid: {state.status.value}\ndata: {data}\n\n".encode()


@router.get(
    "/status/{request_id}/events",
    summary="Follow a job's status as Server-Sent Events",
    description=(
        "A `text/event-stream` of `status` events, each carrying the job's state as JSON (the body "
        "of `GET /v1/status/{request_id}`): the current state at once, then every change (quick "
        "successive changes may arrive as one). The stream ends after the final state (COMPLETED "
        "or FAILED); close your EventSource then, or it reconnects and receives the final state "
        f"again. Streams also end after {SSE_MAX_S:.0f} s; reconnecting resumes."
    ),
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        404: {"model": ErrorResponse, "description": "Unknown or expired request id"},
    },
)
async def status_events(request_id: RequestId, request: Request) -> StreamingResponse:
    store = _store(request)
    owner = owner_filter(request)
    first = await run_in_threadpool(store.get_for, request_id, owner)
    if first is None:
        raise _not_found(request_id)
    notifier = get_notifier(request)

    async def stream() -> AsyncIterator[bytes]:
        started = time.monotonic()
        last_beat = started
        sent: tuple[JobStatus, float] | None = None
        yield b"retry: 2000\n\n"
        with notifier.watch(request_id) as changed:
            while True:
                changed.clear()
                state = await run_in_threadpool(store.get_for, request_id, owner)
                if state is None:
                    yield b"event: gone\ndata: {}\n\n"
                    return
                if (state.status, state.last_updated) != sent:
                    sent = (state.status, state.last_updated)
                    yield _sse(state)
                    last_beat = time.monotonic()
                if _finished(state):
                    return
                now = time.monotonic()
                if now - started > SSE_MAX_S:
                    return
                if now - last_beat >= SSE_KEEPALIVE_S:
                    yield b": keepalive\n\n"
                    last_beat = now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), RECHECK_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
