"""Preprocessor settings (environment variables prefixed ``PENGUIN12_``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from penguin12.imaging import CLIP_PREPROCESSING, Preprocessing
from penguin12.web import ApiSettings


class PreprocessorSettings(ApiSettings):
    service_name: str = "preprocessor"
    port: int = 8000
    # The provenance address *as clients see it*; `status_url` is built from it, so it works as
    # given from the host (no rewriting of internal Docker hostnames).
    public_status_base_url: str = "http://127.0.0.1:8001"
    max_upload_bytes: int = 10 * 1024 * 1024
    # Decompression-bomb guard: checked from the header before any pixel is decoded.
    max_image_pixels: int = 40_000_000
    # Decoding bounds (see preprocessor.decoding): threads that decode, the memory all decodes in
    # progress may hold together, the most one image may need (else 413), and the queue of
    # uploads waiting for room (past its length or wait, 503 + Retry-After).
    decode_workers: int = Field(default=4, ge=1)
    decode_memory_budget_mb: int = Field(default=640, ge=16)
    max_decode_memory_mb: int = Field(default=512, ge=16)
    decode_queue_max: int = Field(default=64, ge=0)
    decode_queue_timeout_s: float = Field(default=60.0, gt=0)
    # Request bodies (see preprocessor.upload_limits): one batch request at most this many bytes.
    max_batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # How images are prepared for the served model (resize/interpolation/size): the default is the
    # embedded detector's; a Penguin-12 bundle needs squash/lanczos/128. The feature extractor fails
    # any job prepared differently from what its model declares, saying which value to set here.
    preprocessing: str = CLIP_PREPROCESSING.key
    # How long a submission may wait for Kafka to acknowledge it before answering 503.
    delivery_timeout_s: float = 5.0
    # Above this many queued jobs, new submissions get 429 + Retry-After (0 = no limit).
    max_backlog: int = 20_000
    backlog_check_interval_s: float = 2.0
    # The consumer group whose lag is the backlog.
    feature_extractor_group: str = "feature_extractor"
    # A repeated Idempotency-Key within this time returns the first request's ticket.
    idempotency_ttl_s: int = 24 * 3600
    # How long a key stays claimed by a first request that is still being accepted (retries get
    # 409 meanwhile); if that request dies without answering, the key is free again after this.
    idempotency_pending_ttl_s: int = 120
    # Master key of the webhook signatures (the same as provenance's): each job's own secret is
    # derived from it and returned at submit when a callback_url is given.
    webhook_secret: str = Field(default="", repr=False)

    @field_validator("preprocessing")
    @classmethod
    def _known_key(cls, value: str) -> str:
        # PENGUIN12_PREPROCESSING=squash/lanczos/128 (the key the feature extractor's error names).
        return Preprocessing.from_key(value).key

    @property
    def prepare_as(self) -> Preprocessing:
        return Preprocessing.from_key(self.preprocessing)
