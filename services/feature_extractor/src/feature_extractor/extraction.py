"""The batch handler: decode deferred uploads, cache lookup, one backbone run for the misses,
features + status out."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.context import Context

from feature_extractor.cache import EmbeddingCache
from feature_extractor.settings import FeatureExtractorSettings
from penguin12 import schemas, tracing
from penguin12.imaging import ImageRejected, prepare_image
from penguin12.logs import request_context
from penguin12.metrics import BACKBONE_IMAGES
from penguin12.schemas import FeaturesMessage, ImageJob, JobStatus, ModelInfo, StatusUpdate
from penguin12.worker import EarlyOutputs, Output, Record, status_output
from penguin12_model import FeatureExtractorModel

log = logging.getLogger("penguin12.feature_extractor")
tracer = trace.get_tracer("penguin12.feature_extractor")


@dataclass
class FeatureExtraction:
    """The feature extractor's `StreamWorker` handler (one call per micro-batch)."""

    settings: FeatureExtractorSettings
    model: FeatureExtractorModel
    cache: EmbeddingCache
    early: EarlyOutputs
    # The served model as results name it (the model is loaded before the handler is built).
    model_info: ModelInfo = field(init=False)
    # Decodes deferred uploads (settings.decode_threads threads).
    decoders: ThreadPoolExecutor = field(init=False)

    # Runs the backbone on the decoded runs, settings.backbone_concurrency at once.
    runners: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.model_info = self.model.info
        self.decoders = ThreadPoolExecutor(self.settings.decode_threads, "decode")
        self.runners = ThreadPoolExecutor(self.settings.backbone_concurrency, "backbone")

    def __call__(self, records: list[Record[ImageJob]]) -> list[Output]:
        spans = [
            tracer.start_span(
                "extract_features",
                context=r.trace_context,
                attributes={
                    "penguin12.request_id": r.payload.request_id,
                    "penguin12.batch": len(records),
                },
            )
            for r in records
        ]
        try:
            return self._extract(records, spans)
        finally:
            for span in spans:
                span.end()

    def _extract(self, records: list[Record[ImageJob]], spans: list[trace.Span]) -> list[Output]:
        contexts = [trace.set_span_in_context(s) for s in spans]
        # Tell clients at once that work started; the worker awaits these acknowledgements with
        # the batch's outputs before it stores the offsets.
        for record, ctx in zip(records, contexts, strict=True):
            self.early.emit(
                status_output(
                    self.settings, self._status(record.payload, JobStatus.PROCESSING_FEATURES), ctx
                )
            )
        for record in records:
            if record.payload.upload is None:
                self._check_prepared(record.payload)
        # Every image is handed to the decode threads at once; the backbone runs on the first
        # `backbone_batch_size` as soon as they are ready, while the threads decode the next
        # ones (the decoder and the runtime release the GIL): decode and model overlap, as in
        # the bare-work limit, instead of taking turns (issue #14).
        decoding = [self.decoders.submit(self._image, r.payload) for r in records]
        embedding: list[Future[list[Output]]] = []
        try:
            failed = self._collect(records, contexts, decoding, embedding)
            return failed + [output for run in embedding for output in run.result()]
        finally:
            # When one record raised (the batch is then retried record by record), the images
            # and runs not yet started are not worked on for nothing; those under way finish.
            futures: list[Future[Any]] = [*decoding, *embedding]
            for future in futures:
                future.cancel()

    def _collect(
        self,
        records: list[Record[ImageJob]],
        contexts: list[Context],
        decoding: list[Future[np.ndarray | str]],
        embedding: list[Future[list[Output]]],
    ) -> list[Output]:
        """Hand each record's decoded image, in order, to backbone runs (``embedding``); returns
        the FAILED statuses of uploads that could not be decoded."""
        failed: list[Output] = []
        run: list[tuple[Record[ImageJob], Context, np.ndarray]] = []
        for record, ctx, future in zip(records, contexts, decoding, strict=True):
            image = future.result()
            if isinstance(image, str):  # a deferred upload whose pixels could not be decoded
                with request_context(record.payload.request_id):
                    log.info("upload refused after the 202: %s", image)
                update = self._status(record.payload, JobStatus.FAILED, error=image)
                failed.append(status_output(self.settings, update, ctx))
                continue
            run.append((record, ctx, image))
            if len(run) >= self.settings.backbone_batch_size:
                embedding.append(self.runners.submit(self._embed, run))
                run = []
        if run:
            embedding.append(self.runners.submit(self._embed, run))
        return failed

    def _embed(self, run: list[tuple[Record[ImageJob], Context, np.ndarray]]) -> list[Output]:
        """Cache lookup, one backbone run for the misses, and the features + status out."""
        images = [image for _, _, image in run]
        # The cache key is the hash of the pixels as received, computed here: the record's own
        # `content_sha256` is not trusted (anyone who can write to the topic could poison the
        # cache for another image with it).
        digests = [hashlib.sha256(image.tobytes()).hexdigest() for image in images]
        cached = self.cache.get_many(digests)
        missing = [i for i, value in enumerate(cached) if value is None]
        vectors: list[np.ndarray | None] = [
            None if value is None else np.frombuffer(value, dtype=np.float32) for value in cached
        ]
        if missing:
            started = time.perf_counter()
            computed = self.model.embed(np.stack([images[i] for i in missing]))
            BACKBONE_IMAGES.inc(len(missing))
            log.debug(
                "backbone ran on %d images in %.1f ms",
                len(missing),
                1e3 * (time.perf_counter() - started),
            )
            fresh = {}
            for row, i in enumerate(missing):
                vector = np.ascontiguousarray(computed[row], dtype=np.float32)
                vectors[i] = vector
                fresh[digests[i]] = vector.tobytes()
            self.cache.put_many(fresh)
        outputs: list[Output] = []
        for i, (record, ctx, _) in enumerate(run):
            job = record.payload
            embedding = vectors[i]
            if embedding is None:  # pragma: no cover - every miss was computed above
                raise RuntimeError("embedding missing after backbone run")
            hit = i not in missing
            with request_context(job.request_id):
                log.info("features ready (cache %s)", "hit" if hit else "miss")
            features = FeaturesMessage(
                request_id=job.request_id,
                submitted_at=job.submitted_at,
                embedding=embedding.tobytes(),
                model=self.model_info,
                cache_hit=hit,
                evidence=job.evidence,
            )
            outputs.append(
                Output(
                    self.settings.topic_features,
                    schemas.encode(features),
                    job.request_id,
                    tracing.inject_headers(ctx),
                )
            )
            outputs.append(
                status_output(self.settings, self._status(job, JobStatus.CLASSIFYING), ctx)
            )
        return outputs

    def _image(self, job: ImageJob) -> np.ndarray | str:
        """The job's prepared pixels, or why its upload cannot be decoded (in words for the
        client: the same message the front door's 422 gives). Deferred uploads are decoded and
        prepared here, as the served model wants them, within the door's bounds."""
        if job.upload is None:
            return job.array()  # raises on a malformed payload
        try:
            return prepare_image(
                job.upload,
                preprocessing=self.model.preprocessing,
                max_pixels=self.settings.max_image_pixels,
                max_decode_bytes=self.settings.max_decode_memory_mb << 20,
            ).pixels
        except ImageRejected as exc:
            return str(exc)

    def _check_prepared(self, job: ImageJob) -> None:
        """Pixels prepared for another model would give a confident, wrong answer: fail the job."""
        wanted = self.model.preprocessing.key
        if job.preprocessing is not None and job.preprocessing != wanted:
            raise ValueError(
                f"the image was prepared as {job.preprocessing}, but the served model "
                f"{self.model_info.name} ({self.model_info.version}) needs {wanted}: "
                f"set PENGUIN12_PREPROCESSING={wanted} on the preprocessor"
            )

    def _status(self, job: ImageJob, status: JobStatus, error: str | None = None) -> StatusUpdate:
        return StatusUpdate(
            request_id=job.request_id,
            submitted_at=job.submitted_at,
            status=status,
            service=self.settings.service_name,
            error=error,
        )
