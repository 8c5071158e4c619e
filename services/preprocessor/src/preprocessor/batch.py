"""`POST /v1/infer/batch`: several images in one request, one ticket (or one refusal) per image.

Each file goes through exactly what `POST /v1/infer` does to an upload; one bad file fails only
itself. The answer lists the files in the order sent. It is 202 when at least one image was
queued; when none was, 503 (with Retry-After) if the queue was the reason, else 422.

With an `Idempotency-Key`, the file at position i is submitted under the key "<key>#<i>": a
retried batch gets the tickets of the files already queued and queues only the ones that failed.
"""

from __future__ import annotations

import functools
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from penguin12.schemas import ErrorResponse, FieldErrors
from penguin12.web import guard_public_route
from preprocessor.deps import ClientDep, IntakeDep, OwnerDep
from preprocessor.refusals import refuse

log = logging.getLogger("penguin12.preprocessor.batch")
router = APIRouter(prefix="/v1", tags=["inference"], dependencies=[Depends(guard_public_route)])

# The most files one batch request may carry (each is still held to the upload size limit).
MAX_BATCH_FILES = 32


class BatchItem(BaseModel):
    filename: str | None = None
    request_id: str | None = None
    status_url: str | None = None
    error: str | None = Field(None, description="Why this image was refused.")
    status: int | None = Field(None, description="The HTTP status this image alone would get.")
    webhook_secret: str | None = Field(
        None, description="With a callback_url: this job's webhook signing secret."
    )


class BatchResponse(BaseModel):
    jobs: list[BatchItem]


@router.post(
    "/infer/batch",
    status_code=202,
    response_model=BatchResponse,
    response_model_exclude_none=True,
    summary="Submit several images; one ticket per image",
    responses={
        400: {"model": ErrorResponse, "description": "`callback_url` refused"},
        401: {"model": ErrorResponse, "description": "API key missing or wrong (when keys are on)"},
        409: {
            "model": BatchResponse,
            "description": "No image queued: the first request with this Idempotency-Key is "
            "still being accepted; see Retry-After",
        },
        413: {"model": ErrorResponse, "description": f"More than {MAX_BATCH_FILES} files"},
        422: {
            "model": BatchResponse | ErrorResponse | FieldErrors,
            "description": "No image could be queued (one error per file), or a malformed request",
        },
        429: {
            "model": ErrorResponse,
            "description": "Rate limit or backlog bound; see Retry-After",
        },
        503: {"model": BatchResponse, "description": "Queue unavailable; see Retry-After"},
    },
)
async def infer_batch(
    intake: IntakeDep,
    client: ClientDep,
    owner: OwnerDep,
    files: Annotated[
        list[UploadFile],
        File(default_factory=list, description="The images (repeat the field)."),
    ],
    callback_url: Annotated[
        str | None,
        Form(description="An http(s) URL to POST each job's final state to."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=240,
            description="Retrying with the same key returns the tickets of the files already "
            "queued (matched by position) and queues only the others.",
        ),
    ] = None,
) -> JSONResponse:
    if not files:
        raise refuse("invalid", 422, "Send at least one image in the `files` field.")
    if len(files) > MAX_BATCH_FILES:
        raise refuse(
            "invalid", 413, f"Too many files: at most {MAX_BATCH_FILES} per batch request."
        )
    callback = (
        await intake.fetcher.check_callback(callback_url.strip())
        if callback_url and callback_url.strip()
        else None
    )
    intake.check_backlog()
    items: list[BatchItem] = []
    for position, upload in enumerate(files):
        key = f"{idempotency_key}#{position}" if idempotency_key else None
        try:
            ticket = await intake.accept_once(
                client,
                key,
                functools.partial(intake.accept, file=upload, callback_url=callback, owner=owner),
                hooked=callback is not None,
            )
        except HTTPException as exc:
            items.append(
                BatchItem(filename=upload.filename, error=exc.detail, status=exc.status_code)
            )
            continue
        items.append(
            BatchItem(
                filename=upload.filename,
                request_id=ticket.request_id,
                status_url=ticket.status_url,
                webhook_secret=ticket.webhook_secret,
            )
        )
    accepted = sum(1 for i in items if i.request_id)
    log.info("batch: %d of %d images queued", accepted, len(items))
    body = BatchResponse(jobs=items).model_dump(exclude_none=True)
    if accepted:
        return JSONResponse(body, status_code=202)
    if any(i.status == 503 for i in items):
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    if any(i.status == 409 for i in items):
        return JSONResponse(body, status_code=409, headers={"Retry-After": "1"})
    return JSONResponse(body, status_code=422)
