"""`GET /v1/status/{request_id}/deliveries`: every webhook attempt of a job, for its submitter."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from penguin12.schemas import ErrorResponse
from penguin12.ssrf import redact
from penguin12.state import is_final
from penguin12.web import guard_public_route
from provenance.deps import OwnerDep, RequestId, StoreDep, WebhookQueueDep, job_not_found

router = APIRouter(prefix="/v1", tags=["status"], dependencies=[Depends(guard_public_route)])


class DeliveryAttempt(BaseModel):
    attempt: int
    at: float
    url: str
    outcome: Literal["delivered", "retry", "failed"]
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None
    next_attempt_at: float | None = None


class DeliveryLog(BaseModel):
    request_id: str
    state: Literal["none", "waiting", "pending", "delivered", "failed"] = Field(
        description="none: no callback_url; waiting: the job has not finished; pending: queued or "
        "retrying; delivered; failed: gave up."
    )
    callback_url: str | None = Field(
        None, description="Without query string (it may hold secrets)."
    )
    attempts: list[DeliveryAttempt] = []
    next_attempt_at: float | None = None


@router.get(
    "/status/{request_id}/deliveries",
    response_model=DeliveryLog,
    response_model_exclude_none=True,
    summary="The webhook delivery log of a job",
    responses={404: {"model": ErrorResponse, "description": "Unknown or expired request id"}},
)
async def deliveries(
    request_id: RequestId, store: StoreDep, queue: WebhookQueueDep, owner: OwnerDep
) -> DeliveryLog:
    def read() -> DeliveryLog | None:
        state = store.get_for(request_id, owner)
        if state is None:
            return None
        url = store.callback_url(request_id)
        if url is None:
            return DeliveryLog(request_id=request_id, state="none")
        meta = queue.meta(request_id)
        attempts = [DeliveryAttempt.model_validate(a) for a in queue.attempts(request_id)]
        if not meta:
            status: Literal["waiting", "pending", "delivered", "failed"] = (
                "pending" if is_final(state.status) else "waiting"
            )
        else:
            status = meta.get("state", "pending")  # type: ignore[assignment]
        next_at = meta.get("next_attempt_at")
        return DeliveryLog(
            request_id=request_id,
            state=status,
            callback_url=redact(url),
            attempts=attempts,
            next_attempt_at=float(next_at) if next_at else None,
        )

    delivery_log = await run_in_threadpool(read)
    if delivery_log is None:
        raise job_not_found(request_id)
    return delivery_log
