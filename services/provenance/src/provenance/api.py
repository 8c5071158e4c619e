"""`GET /v1/status/{request_id}`: where a job is, and its verdict once it has one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from penguin12.schemas import ErrorResponse, JobState, JobStatus
from penguin12.state import JobStore
from penguin12.web import guard_public_route, owner_filter
from provenance import live

router = APIRouter(prefix="/v1", tags=["status"], dependencies=[Depends(guard_public_route)])


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


StoreDep = Annotated[JobStore, Depends(get_store)]
RequestId = Annotated[str, Path(min_length=1, max_length=64, description="From the 202 answer.")]


@router.get(
    "/status/{request_id}",
    response_model=JobState,
    response_model_exclude_none=True,
    summary="Poll a job's status",
    responses={
        404: {"model": ErrorResponse, "description": "Unknown or expired request id"},
        503: {"model": ErrorResponse, "description": "State store unavailable; see Retry-After"},
    },
)
async def get_status(
    request_id: RequestId,
    store: StoreDep,
    request: Request,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            description="Long-poll: answer as soon as the status differs from `since`, or is "
            f"final, or after this many seconds (at most {live.MAX_WAIT_S:.0f}).",
        ),
    ] = None,
    since: Annotated[
        JobStatus | None,
        Query(description="With `wait`: the status you already have (default: the current one)."),
    ] = None,
    until: Annotated[
        Literal["change", "final"],
        Query(
            description="With `wait`: `final` answers only once the job is COMPLETED or FAILED "
            "(or the wait is over): one request per verdict instead of one per step."
        ),
    ] = "change",
) -> JobState:
    if wait:
        return await live.long_poll(request, request_id, wait, since, final_only=until == "final")
    state = await run_in_threadpool(store.get_for, request_id, owner_filter(request))
    if state is None:
        raise HTTPException(
            status_code=404,
            detail=f"No job with request_id {request_id!r}: it was never submitted or has expired.",
        )
    return state
