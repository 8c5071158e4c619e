"""Taking one image in: read it (upload or URL), prepare it within the decode limits, read its
evidence, queue it, and hand out the ticket; once per Idempotency-Key. The routes (`api`,
`batch`) only say which images and which key."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO

from fastapi import HTTPException, UploadFile
from opentelemetry import trace
from starlette.concurrency import run_in_threadpool

from penguin12.evidence import TrustAnchors
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
from penguin12.schemas import Finding, SubmitResponse
from penguin12.security import webhook_secret
from preprocessor.admission import Admission
from preprocessor.decoding import DecodeBusy, DecodeGate
from preprocessor.jobs import DeferredUpload, IdempotencyInProgress, JobPublisher, PublishFailed
from preprocessor.refusals import backlog_full, key_in_progress, refuse
from preprocessor.remote import UrlFetcher
from preprocessor.settings import PreprocessorSettings
from preprocessor.upload import upload_evidence

log = logging.getLogger("penguin12.preprocessor.intake")
tracer = trace.get_tracer("penguin12.preprocessor")


@dataclass(frozen=True)
class Intake:
    """What accepting an image takes, made once at start (`main`) and shared by the routes."""

    settings: PreprocessorSettings
    publisher: JobPublisher
    decoder: DecodeGate
    admission: Admission
    fetcher: UrlFetcher
    trust: TrustAnchors

    def check_backlog(self) -> None:
        """429 while the queue is over its bound (nothing is read or decoded first)."""
        if self.admission.backlog.overloaded:
            raise backlog_full(self.settings.max_backlog)

    async def repeat_of(
        self, client: str, idempotency_key: str, hooked: bool
    ) -> SubmitResponse | None:
        """The first request's ticket when this key was used before (an idempotent hit)."""
        try:
            earlier = await self.admission.lookup(client, idempotency_key)
        except IdempotencyInProgress as exc:
            raise key_in_progress() from exc
        return self.ticket(earlier, hooked) if earlier else None

    async def accept_once(
        self,
        client: str,
        idempotency_key: str | None,
        accept: Callable[[str], Awaitable[SubmitResponse]],
        *,
        hooked: bool = False,
    ) -> SubmitResponse:
        """``accept`` under a new request id, or the ticket of the queued job that holds the key.

        The key is claimed (as pending) before the image is queued, confirmed once it is, and
        released if it is not; a retry meanwhile gets 409. So a ticket given for a key always
        names a queued job, and a retry after a refusal or a crash tries again
        (`IdempotencyRegistry`).
        """
        request_id = new_request_id()
        if not idempotency_key:
            return await accept(request_id)
        admission = self.admission
        try:
            owner = await admission.claim(client, idempotency_key, request_id)
        except IdempotencyInProgress as exc:
            raise key_in_progress() from exc
        if owner != request_id:
            return self.ticket(owner, hooked)
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

    async def accept(
        self,
        request_id: str,
        file: UploadFile | None,
        *,
        url: str | None = None,
        callback_url: str | None = None,
        owner: str | None = None,
    ) -> SubmitResponse:
        settings = self.settings
        with (
            request_context(request_id),
            tracer.start_as_current_span("upload", attributes={"penguin12.request_id": request_id}),
        ):
            source: BinaryIO | bytes
            if file is not None:
                source = _upload_source(file, settings.max_upload_bytes)
            else:
                source = await self.fetcher.download(url or "", settings.max_upload_bytes)
            image: PreparedImage | DeferredUpload
            deferred = _deferrable(source, settings)
            if deferred is not None:
                # Both reads of a deferred upload in one trip to the thread pool: each hand-off
                # costs the door CPU (issue #14).
                probe, evidence = await run_in_threadpool(self._read_deferred, deferred)
                image = DeferredUpload(deferred, probe.format)
            else:
                with tracer.start_as_current_span("preprocess"):
                    image = await self._prepare(source)
                evidence = await run_in_threadpool(self._evidence, source)
            try:
                await self.publisher.publish(
                    request_id, image, evidence=evidence, callback_url=callback_url, owner=owner
                )
            except PublishFailed as exc:
                log.error("could not queue the job: %s", exc)
                raise refuse(
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
            return self.ticket(request_id, callback_url is not None)

    def _read_deferred(self, data: bytes) -> tuple[ImageProbe, list[Finding]]:
        """A deferred upload's header check and evidence (blocking: runs on the thread pool)."""
        return self._check_header(data), self._evidence(data)

    def _evidence(self, source: BinaryIO | bytes) -> list[Finding]:
        with tracer.start_as_current_span("read_evidence"):
            return upload_evidence(source, self.settings, self.trust)

    def _check_header(self, source: BinaryIO | bytes) -> ImageProbe:
        """Read the header only: format (415), pixel count and decode memory (413), empty
        (422). Blocking: call it on the thread pool."""
        settings = self.settings
        with tracer.start_as_current_span("check_header"):
            try:
                probe = probe_image(
                    source,
                    max_pixels=settings.max_image_pixels,
                    min_side=settings.prepare_as.decode_min_side,
                )
                budget = min(settings.max_decode_memory_mb, settings.decode_memory_budget_mb)
                check_decode_budget(probe, budget << 20)
                return probe
            except ImageRejected as exc:
                raise _refused(exc) from exc

    async def _prepare(self, source: BinaryIO | bytes) -> PreparedImage:
        """Probe the header, refuse or wait for room in the decode budget, then decode on its
        pool."""
        spec = self.settings.prepare_as
        probe = await run_in_threadpool(self._check_header, source)
        try:
            return await self.decoder.run(
                probe.decode_bytes, lambda: prepare_probed(probe, preprocessing=spec)
            )
        except ImageRejected as exc:
            raise _refused(exc) from exc
        except DecodeBusy as exc:
            log.warning("upload deferred: %s", exc)
            raise refuse("busy", 503, str(exc), {"Retry-After": str(exc.retry_after_s)}) from exc

    def ticket(self, request_id: str, hooked: bool = False) -> SubmitResponse:
        """The 202 answer: where to poll, and the job's webhook secret when it has a callback."""
        settings = self.settings
        status_url = f"{settings.public_status_base_url.rstrip('/')}/v1/status/{request_id}"
        secret = (
            webhook_secret(settings.webhook_secret, request_id)
            if hooked and settings.webhook_secret
            else None
        )
        return SubmitResponse(request_id=request_id, status_url=status_url, webhook_secret=secret)


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


def _refused(exc: ImageRejected) -> HTTPException:
    log.info("upload refused (%d): %s", exc.status_code, exc)
    return refuse("invalid" if exc.status_code != 413 else "too_large", exc.status_code, str(exc))


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
        raise refuse(
            "too_large",
            413,
            f"The file is larger than the {limit / 2**20:.0f} MiB limit "
            f"(got at least {size:,} bytes).",
        )
    file.file.seek(0)
    return file.file


def new_request_id() -> str:
    """An unguessable id (122 random bits, UUID4 form): knowing one id reveals no other."""
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
