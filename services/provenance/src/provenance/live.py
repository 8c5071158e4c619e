"""Live status: long-poll (`GET /v1/status/{id}?wait=N`) and Server-Sent Events.

Waiting costs no polling of Redis: `JobStore.apply` publishes every applied change, and one
subscription per process (`provenance.notifier`) wakes the requests waiting on that job. Each waiter also re-reads the state every few seconds, so a notification lost
while the subscription reconnects costs a little latency, never a stuck request.

The `wait` parameters themselves are on `GET /v1/status/{id}` (provenance/api.py hands over to
`long_poll`); this module adds `GET /v1/status/{id}/events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from penguin12.schemas import ErrorResponse, JobState, JobStatus
from penguin12.state import JobStore, is_final
from penguin12.web import guard_public_route
from provenance.deps import NotifierDep, OwnerDep, RequestId, StoreDep, job_not_found
from provenance.notifier import StatusNotifier

router = APIRouter(prefix="/v1", tags=["status"], dependencies=[Depends(guard_public_route)])

# Long-poll waits at most this long, whatever the client asks.
MAX_WAIT_S = 30.0
# A waiter re-reads the state this often even without a notification.
RECHECK_S = 2.0
# An SSE stream sends a comment this often so proxies keep it open, and ends after SSE_MAX_S (the
# browser's EventSource reconnects by itself; a stream must not hold up a shutdown for long).
SSE_KEEPALIVE_S = 15.0
SSE_MAX_S = 300.0


async def long_poll(
    store: JobStore,
    notifier: StatusNotifier,
    request_id: str,
    owner: str | None,
    wait_s: float,
    since: JobStatus | None,
    *,
    final_only: bool = False,
) -> JobState:
    """The job's state as soon as its status differs from ``since`` (default: its status now), or
    it is final, or ``wait_s`` (at most `MAX_WAIT_S`) has passed; with ``final_only``, only the
    last two count."""
    deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
    with notifier.watch(request_id, final_only=final_only) as changed:
        baseline = since
        while True:
            changed.clear()
            state = await store.get_for_async(request_id, owner)
            if state is None:
                raise job_not_found(request_id)
            if baseline is None:
                baseline = state.status
            remaining = deadline - time.monotonic()
            moved = state.status != baseline and not final_only
            if moved or is_final(state.status) or remaining <= 0:
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
async def status_events(
    request_id: RequestId, store: StoreDep, notifier: NotifierDep, owner: OwnerDep
) -> StreamingResponse:
    first = await store.get_for_async(request_id, owner)
    if first is None:
        raise job_not_found(request_id)

    async def stream() -> AsyncIterator[bytes]:
        started = time.monotonic()
        last_beat = started
        sent: tuple[JobStatus, float] | None = None
        yield b"retry: 2000\n\n"
        with notifier.watch(request_id) as changed:
            while True:
                changed.clear()
                state = await store.get_for_async(request_id, owner)
                if state is None:
                    yield b"event: gone\ndata: {}\n\n"
                    return
                if (state.status, state.last_updated) != sent:
                    sent = (state.status, state.last_updated)
                    yield _sse(state)
                    last_beat = time.monotonic()
                if is_final(state.status):
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
