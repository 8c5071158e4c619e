"""`POST /v1/infer`: one image in (a file or a URL), a 202 with its ticket out (see `intake`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, UploadFile, status

from penguin12.schemas import ErrorResponse, FieldErrors, SubmitResponse
from penguin12.web import guard_public_route
from preprocessor.deps import ClientDep, IntakeDep, OwnerDep

router = APIRouter(prefix="/v1", tags=["inference"], dependencies=[Depends(guard_public_route)])


@router.post(
    "/infer",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmitResponse,
    response_model_exclude_none=True,
    summary="Submit an image for deepfake analysis",
    responses={
        400: {
            "model": ErrorResponse,
            "description": "`url` or `callback_url` refused (not a public address) or `url` "
            "could not be downloaded",
        },
        401: {"model": ErrorResponse, "description": "API key missing or wrong (when keys are on)"},
        413: {
            "model": ErrorResponse,
            "description": "Request, file, pixel count or decode memory over the limit; too many "
            "form parts",
        },
        409: {
            "model": ErrorResponse,
            "description": "The first request with this Idempotency-Key is still being accepted; "
            "retry after Retry-After to get its ticket",
        },
        415: {"model": ErrorResponse, "description": "Not a JPEG, PNG, WebP or BMP image"},
        422: {
            "model": ErrorResponse | FieldErrors,
            "description": "Empty image; malformed request fields; a truncated or corrupt image "
            "when it is decoded here (uploads over PENGUIN12_DEFER_DECODE_MAX_BYTES, or with "
            "PENGUIN12_DEFER_DECODE=false; otherwise its job ends FAILED with that message)",
        },
        429: {
            "model": ErrorResponse,
            "description": "Rate limit or backlog bound; see Retry-After",
        },
        503: {
            "model": ErrorResponse,
            "description": "Queue unavailable, or too busy decoding other images; see Retry-After",
        },
    },
)
async def infer(
    intake: IntakeDep,
    client: ClientDep,
    owner: OwnerDep,
    # Typed without `| None` so that the OpenAPI schema is a plain binary field, not "binary or
    # null" (a multipart field cannot be null); absent, it is None.
    file: Annotated[
        UploadFile, File(description="The image: JPEG, PNG, WebP or BMP. Or give `url`.")
    ] = None,  # type: ignore[assignment]
    url: Annotated[
        str | None,
        Form(description="Instead of `file`: an http(s) URL of the image, fetched by the service."),
    ] = None,
    callback_url: Annotated[
        str | None,
        Form(description="An http(s) URL to POST the final state to (a signed webhook)."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            description="Retrying with the same key returns the first request's ticket (409 "
            "while the first request is still being accepted).",
        ),
    ] = None,
) -> SubmitResponse:
    sources = await intake.fetcher.check_submission(file, url, callback_url)
    hooked = sources.callback_url is not None
    if idempotency_key:
        earlier = await intake.repeat_of(client, idempotency_key, hooked)
        if earlier is not None:
            return earlier
    intake.check_backlog()
    return await intake.accept_once(
        client,
        idempotency_key,
        lambda request_id: intake.accept(
            request_id, file, url=sources.url, callback_url=sources.callback_url, owner=owner
        ),
        hooked=hooked,
    )
