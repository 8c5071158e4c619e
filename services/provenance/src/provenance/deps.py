"""The FastAPI dependencies of provenance's routes, in one place: what `main.py` put on
``app.state`` at start, and the request's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from penguin12.state import JobStore
from penguin12.web import owner_filter
from provenance.notifier import StatusNotifier
from provenance.webhooks.queue import WebhookQueue


async def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


async def get_notifier(request: Request) -> StatusNotifier:
    notifier: StatusNotifier = request.app.state.notifier
    return notifier


async def get_webhook_queue(request: Request) -> WebhookQueue:
    queue: WebhookQueue = request.app.state.webhook_queue
    return queue


StoreDep = Annotated[JobStore, Depends(get_store)]
NotifierDep = Annotated[StatusNotifier, Depends(get_notifier)]
WebhookQueueDep = Annotated[WebhookQueue, Depends(get_webhook_queue)]
# The identity a job must belong to for this request to see it (None: API keys are off).
OwnerDep = Annotated[str | None, Depends(owner_filter)]
RequestId = Annotated[str, Path(min_length=1, max_length=64, description="From the 202 answer.")]


def job_not_found(request_id: str) -> HTTPException:
    """The one answer for a job this client cannot see: unknown, expired or someone else's."""
    return HTTPException(
        status_code=404,
        detail=f"No job with request_id {request_id!r}: it was never submitted or has expired.",
    )
