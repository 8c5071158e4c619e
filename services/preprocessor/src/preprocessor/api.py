"""`POST /v1/infer`: validate and prepare an upload, publish it, answer 202 with a ticket."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, BinaryIO

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    HTTPException,
    Request,
    UploadFile,
    status,
)
from opentelemetry import trace
from starlette.concurrency import run_in_threadpool

from penguin12.imaging import (
    ImageProbe,
    ImageRejected,
    PreparedImage,
    check_decode_budget,
    prepare_probed,
    probe_image,
)
from penguin12.logs import request_context
from penguin12.metrics import JOBS_SUBMITTED
from penguin12.schemas import ErrorResponse, FieldErrors, SubmitResponse
from penguin12.security import client_identity, webhook_secret
from penguin12.web import guard_public_route, owner_filter
from preprocessor import remote
from preprocessor.admission import Admission
from preprocessor.decoding import DecodeBusy, DecodeGate
from preprocessor.jobs import DeferredUpload, IdempotencyInProgress, JobPublisher, PublishFailed
from preprocessor.settings import PreprocessorSettings
from preprocessor.upload import upload_evidence

log = logging.getLogger("penguin12.preprocessor.api")
tracer = trace.get_tracer("penguin12.preprocessor")
router = APIRouter(prefix="/v1", tags=["inference"], dependencies=[Depends(guard_public_route)])

_READ_CHUNK = 1 << 20


def get_settings(request: Request) -> PreprocessorSettings:
    settings: PreprocessorSettings = request.app.state.settings
    return settings


def get_publisher(request: Request) -> JobPublisher:
    publisher: JobPublisher = request.app.state.publisher
    return publisher


def get_decoder(request: Request) -> DecodeGate:
    decoder: DecodeGate = request.app.state.decoder
    return decoder


SettingsDep = Annotated[PreprocessorSettings, Depends(get_settings)]
PublisherDep = Annotated[JobPublisher, Depends(get_publisher)]
DecoderDep = Annotated[DecodeGate, Depends(get_decoder)]


def _reject(
    outcome: str, code: int, detail: str, headers: dict[str, str] | None = None
) -> HTTPException:
    JOBS_SUBMITTED.labels(outcome=outcome).inc()
    return HTTPException(status_code=code, detail=detail, headers=headers)


def _upload_source(file: UploadFile, limit: int) -> BinaryIO:
    """The spooled upload itself (never copied into memory), if it is within ``limit`` bytes.

    The body was already held to the limit while it streamed in (`preprocessor.upload_limits`);
    this is the exact check on the file part alone.
    """
    size = file.size
    if size is None:
        file.file.seek(0, 2)
        size = file.file.tell()
    if size > limit:
        raise _reject("too_large", 413, _too_large(size, limit))
    file.file.seek(0)
    return file.file


def _too_large(size: int, limit: int) -> str:
    return (
        f"The file is larger than the {limit / 2**20:.0f} MiB limit (got at least {size:,} bytes)."
    )


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
    request: Request,
    settings: SettingsDep,
    publisher: PublisherDep,
    decoder: DecoderDep,
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
    sources = await remote.check_submission(file, url, callback_url)
    admission: Admission = request.app.state.admission
    client = client_identity(request)
    hooked = sources.callback_url is not None
    if idempotency_key:
        try:
            earlier = await admission.replay(client, idempotency_key)
        except IdempotencyInProgress as exc:
            raise _in_progress() from exc
        if earlier:
            return _ticket(settings, earlier, hooked)
    if admission.backlog.overloaded:
        raise _reject(
            "backlog",
            429,
            f"The queue holds more than {settings.max_backlog:,} jobs; retry later.",
            {"Retry-After": "10"},
        )
    return await _accept_once(
        admission,
        client,
        idempotency_key,
        settings,
        lambda request_id: _accept(
            request_id,
            file,
            settings,
            publisher,
            decoder=decoder,
            url=sources.url,
            callback_url=sources.callback_url,
            owner=owner_filter(request),
        ),
        hooked=hooked,
    )


async def _accept_once(
    admission: Admission | None,
    client: str,
    idempotency_key: str | None,
    settings: PreprocessorSettings,
    accept: Callable[[str], Awaitable[SubmitResponse]],
    *,
    hooked: bool = False,
) -> SubmitResponse:
    """``accept`` under a new request id, or the ticket of the queued job that holds the key.

    The key is claimed (as pending) before the image is queued, confirmed once it is, and
    released if it is not; a retry meanwhile gets 409. So a ticket given for a key always names a
    queued job, and a retry after a refusal or a crash tries again (`IdempotencyRegistry`).
    """
    request_id = str(_new_request_id())
    if not idempotency_key or admission is None:
        return await accept(request_id)
    try:
        owner = await admission.claim(client, idempotency_key, request_id)
    except IdempotencyInProgress as exc:
        raise _in_progress() from exc
    if owner != request_id:
        return _ticket(settings, owner, hooked)
    try:
        ticket = await accept(request_id)
    except BaseException:
        try:
            await admission.release(client, idempotency_key, request_id)
        except Exception:  # the claim expires by itself (idempotency_pending_ttl_s)
            log.warning("could not release Idempotency-Key claim", exc_info=True)
        raise
    try:
        await admission.confirm(client, idempotency_key, request_id)
    except Exception:  # the job is queued all the same: the 202 stays true
        log.warning(
            "could not confirm Idempotency-Key; a retry after its claim expires "
            "may queue the image again",
            exc_info=True,
        )
    return ticket


def _in_progress() -> HTTPException:
    return _reject(
        "in_progress",
        409,
        "A request with this Idempotency-Key is still being accepted; retry in a moment to get "
        "its ticket.",
        {"Retry-After": "1"},
    )


async def _accept(
    request_id: str,
    file: UploadFile | None,
    settings: PreprocessorSettings,
    publisher: JobPublisher,
    *,
    decoder: DecodeGate,
    url: str | None = None,
    callback_url: str | None = None,
    owner: str | None = None,
) -> SubmitResponse:
    with (
        request_context(request_id),
        tracer.start_as_current_span("upload", attributes={"penguin12.request_id": request_id}),
    ):
        source: BinaryIO | bytes
        if file is not None:
            source = _upload_source(file, settings.max_upload_bytes)
        else:
            source = await remote.download(url or "", settings.max_upload_bytes)
        image: PreparedImage | DeferredUpload
        deferred = _deferrable(source, settings)
        if deferred is not None:
            with tracer.start_as_current_span("check_header"):
                probe = await _check_header(deferred, settings)
            image = DeferredUpload(deferred, probe.format)
            source = deferred
        else:
            with tracer.start_as_current_span("preprocess"):
                image = await _prepare(source, settings, decoder)
        with tracer.start_as_current_span("read_evidence"):
            evidence = await run_in_threadpool(upload_evidence, source, settings)
        try:
            await publisher.publish(
                request_id, image, evidence=evidence, callback_url=callback_url, owner=owner
            )
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
            "accepted %s%s%s",
            image.source_format,
            " (decode deferred)"
            if isinstance(image, DeferredUpload)
            else f" {image.original_width}x{image.original_height}",
            f"; evidence: {', '.join(f'{f.source}/{f.finding}' for f in evidence)}"
            if evidence
            else "",
        )
        return _ticket(settings, request_id, callback_url is not None)


def _deferrable(source: BinaryIO | bytes, settings: PreprocessorSettings) -> bytes | None:
    """The upload's bytes if its decode is left to the feature extractor, else None."""
    if not settings.defer_decode:
        return None
    if isinstance(source, bytes):
        return source if len(source) <= settings.defer_decode_max_bytes else None
    source.seek(0, 2)
    if source.tell() > settings.defer_decode_max_bytes:
        return None
    source.seek(0)
    return source.read()


async def _check_header(source: BinaryIO | bytes, settings: PreprocessorSettings) -> ImageProbe:
    """Read the header only: format (415), pixel count and decode memory (413), empty (422)."""
    spec = settings.prepare_as
    try:
        probe = await run_in_threadpool(
            probe_image, source, max_pixels=settings.max_image_pixels, min_side=spec.decode_min_side
        )
        check_decode_budget(
            probe, min(settings.max_decode_memory_mb, settings.decode_memory_budget_mb) << 20
        )
        return probe
    except ImageRejected as exc:
        raise _refused(exc) from exc


def _refused(exc: ImageRejected) -> HTTPException:
    log.info("upload refused (%d): %s", exc.status_code, exc)
    return _reject("invalid" if exc.status_code != 413 else "too_large", exc.status_code, str(exc))


async def _prepare(
    source: BinaryIO | bytes, settings: PreprocessorSettings, decoder: DecodeGate
) -> PreparedImage:
    """Probe the header, refuse or wait for room in the decode budget, then decode on its pool."""
    spec = settings.prepare_as
    probe = await _check_header(source, settings)
    try:
        return await decoder.run(
            probe.decode_bytes, lambda: prepare_probed(probe, preprocessing=spec)
        )
    except ImageRejected as exc:
        raise _refused(exc) from exc
    except DecodeBusy as exc:
        log.warning("upload deferred: %s", exc)
        raise _reject("busy", 503, str(exc), {"Retry-After": str(exc.retry_after_s)}) from exc


def _ticket(
    settings: PreprocessorSettings, request_id: str, hooked: bool = False
) -> SubmitResponse:
    status_url = f"{settings.public_status_base_url.rstrip('/')}/v1/status/{request_id}"
    secret = (
        webhook_secret(settings.webhook_secret, request_id)
        if hooked and settings.webhook_secret
        else None
    )
    return SubmitResponse(request_id=request_id, status_url=status_url, webhook_secret=secret)


def _new_request_id() -> str:
    """An unguessable id (122 random bits, UUID4 form): knowing one id reveals no other."""
    import uuid

    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
