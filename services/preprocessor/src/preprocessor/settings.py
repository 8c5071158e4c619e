"""Preprocessor settings (environment variables prefixed ``PENGUIN12_``): read once, in `main`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from penguin12.imaging import CLIP_PREPROCESSING, Preprocessing
from penguin12.settings import UrlFetchSettings, WebhookSigningSettings
from penguin12.web import ApiSettings


class PreprocessorSettings(ApiSettings, UrlFetchSettings, WebhookSigningSettings):
    """Everything the preprocessor reads from its environment, read once by `main`: the API part,
    the URL rules and fetch limits, the webhook master key (each job's own secret is derived from
    it and returned at submit when a callback_url is given), and the upload limits below."""

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
    # Deferred decode (issue #14): check an upload's header here (format, pixel count, decode
    # memory: 413/415 at once), then queue the file as it came; the feature extractor decodes it,
    # and a file whose pixels turn out corrupt ends FAILED with the same message a 422 would give.
    # Only uploads up to defer_decode_max_bytes (they must fit one Kafka record as base64); larger
    # ones are decoded here as before. False: decode every upload here (synchronous 422).
    defer_decode: bool = True
    defer_decode_max_bytes: int = Field(default=640 * 1024, ge=0, le=700_000)
    # How the image travels in its Kafka record (penguin12.schemas): raw bytes in a binary frame,
    # or base64 inside the JSON. "json" only while feature extractors from before the frame still
    # consume (they refuse a framed record); every feature extractor decodes both.
    image_record_format: Literal["binary", "json"] = "binary"
    # Request bodies (see preprocessor.upload_limits): one batch request at most this many bytes.
    max_batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # How images are prepared for the served model (resize/interpolation/size). Unset or empty: what
    # the bundle info file below says, else the embedded detector's. Set, it wins (a Penguin-12
    # bundle needs squash/lanczos/128). The feature extractor fails any job prepared differently
    # from what its model declares, saying which value to set here.
    preprocessing: str = ""
    # The served bundle's BUNDLE.json (written by `python -m penguin12_model.bake`): the Docker
    # image carries the baked bundle's copy, so compose needs no preprocessing setting by hand.
    bundle_info_file: Path | None = None
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
    # Read provenance evidence (C2PA, IPTC, generator tags) from each upload's own bytes.
    read_evidence: bool = True
    # A PEM file of root certificates whose C2PA signers count as trusted; unset: none do (a
    # manifest's signature is still verified). Never fetched or updated over the network.
    c2pa_trust_anchors_file: str | None = None

    _preprocessing_origin: str = PrivateAttr(default="")

    @field_validator("preprocessing")
    @classmethod
    def _known_key(cls, value: str) -> str:
        # PENGUIN12_PREPROCESSING=squash/lanczos/128 (the key the feature extractor's error names).
        return Preprocessing.from_key(value).key if value.strip() else ""

    @model_validator(mode="after")
    def _resolve_preprocessing(self) -> PreprocessorSettings:
        if self.preprocessing:
            self._preprocessing_origin = "PENGUIN12_PREPROCESSING"
        elif self.bundle_info_file is not None:
            self.preprocessing = bundle_preprocessing(self.bundle_info_file).key
            self._preprocessing_origin = f"the served bundle ({self.bundle_info_file})"
        else:
            self.preprocessing = CLIP_PREPROCESSING.key
            self._preprocessing_origin = "the embedded detector's default"
        return self

    @property
    def prepare_as(self) -> Preprocessing:
        return Preprocessing.from_key(self.preprocessing)

    @property
    def preprocessing_origin(self) -> str:
        """Where `preprocessing` came from, for the start-up log."""
        return self._preprocessing_origin


def bundle_preprocessing(path: Path) -> Preprocessing:
    """The preprocessing a baked bundle declares (BUNDLE.json's ``preprocessing`` key).

    A configured file that is missing or says nothing usable stops the start: falling back to a
    default would prepare images for another model and fail every job instead.
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"bundle info file {path} (PENGUIN12_BUNDLE_INFO_FILE) cannot be read: {exc}"
        ) from exc
    key = record.get("preprocessing") if isinstance(record, dict) else None
    if not isinstance(key, str):
        raise ValueError(
            f"bundle info file {path} does not say the model's preprocessing; set "
            "PENGUIN12_PREPROCESSING (e.g. squash/lanczos/128 for Penguin-12)"
        )
    return Preprocessing.from_key(key)
