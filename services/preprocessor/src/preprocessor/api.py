"""`POST /v1/infer`: validate and prepare an upload, publish it, answer 202 with a ticket."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile, status
from opentelemetry import trace
from penguin12.imaging import ImageRejected, prepare_image
from penguin12.logs import request_context
from penguin12.metrics import JOBS_SUBMITTED
from penguin12.schemas import ErrorResponse, SubmitResponse
from starlette.concurrency import run_in_threadpool

from preprocessor.jobs import JobPublisher, PublishFailed
from preprocessor.settings import PreprocessorSettings

log = logging.getLogger("penguin12.preprocessor.api")
tracer = trace.get_tracer("penguin12.preprocessor")
router = APIRouter(prefix="/v1", tags=["inference"])

_READ_CHUNK = 1 << 20


def get_settings(request: Request) -> PreprocessorSettings:
    settings: PreprocessorSettings = request.app.state.settings
    return settings


def get_publisher(request: Request) -> JobPublisher:
    publisher: JobPublisher = request.app.state.publisher
    return publisher


SettingsDep = Annotated[PreprocessorSettings, Depends(get_settings)]
PublisherDep = Annotated[JobPublisher, Depends(get_publisher)]


def _reject(
    outcome: str, code: int, detail: str, headers: dict[str, str] | None = None
) -> HTTPException:
    JOBS_SUBMITTED.labels(outcome=outcome).inc()
    return HTTPException(status_code=code, detail=detail, headers=headers)


async def _read_limited(file: UploadFile, limit: int) -> bytes:
    """Read the upload but never more than ``limit`` bytes."""
    if file.size is not None and file.size > limit:
        raise _reject("too_large", 413, _too_large(file.size, limit))
    chunks, total = [], 0
    while chunk := await file.read(_READ_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _reject("too_large", 413, _too_large(total, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return (
        f"The file is larger than the {limit / 2**20:.0f} MiB limit (got at least {size:,} bytes)."
    )


@router.post(
    "/infer",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmitResponse,
    summary="Submit an image for deepfake analysis",
    responses={
        413: {"model": ErrorResponse, "description": "File or pixel count over the limit"},
        415: {"model": ErrorResponse, "description": "Not a JPEG, PNG, WebP or BMP image"},
        422: {"model": ErrorResponse, "description": "Empty, truncated or corrupt image"},
        503: {"model": ErrorResponse, "description": "Queue unavailable; retry after Retry-After"},
    },
)
async def infer(
    file: Annotated[UploadFile, File(description="The image: JPEG, PNG, WebP or BMP.")],
    settings: SettingsDep,
    publisher: PublisherDep,
) -> SubmitResponse:
    request_id = str(_new_request_id())
    with (
        request_context(request_id),
        tracer.start_as_current_span("upload", attributes={"penguin12.request_id": request_id}),
    ):
        data = await _read_limited(file, settings.max_upload_bytes)
        try:
            with tracer.start_as_current_span("preprocess"):
                image = await run_in_threadpool(
                    prepare_image,
                    data,
                    size=settings.input_size,
                    max_pixels=settings.max_image_pixels,
                )
        except ImageRejected as exc:
            log.info("upload refused (%d): %s", exc.status_code, exc)
            raise _reject("invalid", exc.status_code, str(exc)) from exc
        try:
            await publisher.publish(request_id, image)
        except PublishFailed as exc:
            log.error("could not queue the job: %s", exc)
            raise _reject(
                "unavailable",
                503,
                "The job queue is unavailable right now; nothing was queued. Retry shortly.",
                {"Retry-After": "5"},
            ) from exc
        JOBS_SUBMITTED.labels(outcome="accepted").inc()
        log.info(
            "accepted %s %dx%d (%d bytes)",
            image.source_format,
            image.original_width,
            image.original_height,
            len(data),
        )
        status_url = f"{settings.public_status_base_url.rstrip('/')}/v1/status/{request_id}"
        return SubmitResponse(request_id=request_id, status_url=status_url)


def _new_request_id() -> str:
    """An unguessable id (122 random bits, UUID4 form): knowing one id reveals no other."""
    import uuid

    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
