"""`GET /v1/status/{request_id}`: where a job is, and its verdict once it has one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from penguin12.schemas import ErrorResponse, JobState, JobStatus
from penguin12.web import guard_public_route
from provenance import live
from provenance.deps import NotifierDep, OwnerDep, RequestId, StoreDep, job_not_found

router = APIRouter(prefix="/v1", tags=["status"], dependencies=[Depends(guard_public_route)])


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
    notifier: NotifierDep,
    owner: OwnerDep,
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
        return await live.long_poll(
            store, notifier, request_id, owner, wait, since, final_only=until == "final"
        )
    state = await store.get_for_async(request_id, owner)
    if state is None:
        raise job_not_found(request_id)
    return state
