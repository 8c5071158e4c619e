"""Wire formats: every Kafka message and every API body Penguin12 exchanges.

Each Kafka message is JSON with a ``schema_version``; a consumer that meets a version or shape it
does not know treats the record as poison (dead-letter + FAILED), never as a reason to stop.
Embeddings travel as base64 inside the JSON. An image job's image (the upload as it came, or the
prepared pixels) travels as raw bytes after its other fields' JSON, in a small binary frame
(`encode(..., framed=True)`): base64 made the biggest record a third larger and cost both ends
and the broker CPU for every job (issue #14, docs/benchmarks.md). A JSON record starts with ``{``,
a framed one with a zero byte, so consumers decode both: records written before the frame still
decode during an upgrade.
"""

from __future__ import annotations

import json
import struct
import time
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1


class JobStatus(StrEnum):
    """A job's life; the order of `STATUS_RANK` is the only direction a job may move."""

    PENDING = "PENDING"
    PROCESSING_FEATURES = "PROCESSING_FEATURES"
    CLASSIFYING = "CLASSIFYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


STATUS_RANK: dict[JobStatus, int] = {
    JobStatus.PENDING: 0,
    JobStatus.PROCESSING_FEATURES: 1,
    JobStatus.CLASSIFYING: 2,
    JobStatus.COMPLETED: 3,
    JobStatus.FAILED: 3,
}
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


class ModelInfo(BaseModel):
    """Which model produced a result; ``demo`` marks the generated, meaningless demo bundle."""

    name: str
    version: str
    architecture: str
    demo: bool
    family: str | None = Field(None, description="Model family: torch or onnx_probe.")
    license: str | None = Field(None, description="Licence of the weights, as their origin states.")
    origin: str | None = Field(None, description="Where the weights come from (repo, revision).")
    caveat: str | None = Field(None, description="What a verdict from this model does not mean.")


Assessment = Literal["likely_real", "inconclusive", "likely_fake", "declared_ai"]


class Finding(BaseModel):
    """One piece of evidence read from the uploaded file's own metadata (not from its pixels).

    ``source`` is where it was read (``c2pa``, ``xmp``, ``png``, ``exif``, ``evidence``);
    ``finding`` a short stable code a program can match (see `penguin12.evidence`); ``detail`` the
    same in words a person understands.
    """

    model_config = ConfigDict(frozen=True)

    source: Annotated[str, Field(max_length=32)]
    finding: Annotated[str, Field(max_length=64)]
    detail: Annotated[str, Field(max_length=1024)]


class Result(BaseModel):
    prediction: str = Field(description="Predicted label, REAL or FAKE.")
    confidence: float = Field(ge=0.0, le=1.0, description="Probability of the predicted label.")
    fake_probability: float = Field(
        ge=0.0,
        le=1.0,
        description="The pixel model's calibrated probability that the image is fake/AI-generated "
        "(still the pixel model's own number when the file declares AI generation).",
    )
    assessment: Assessment | None = Field(
        None,
        description=(
            "likely_real / inconclusive / likely_fake from the model's abstain band (a model "
            "without one uses its single threshold). A signal, not proof: see model.caveat. "
            "declared_ai: the file itself declares AI generation (see `evidence`), whatever the "
            "pixel model says."
        ),
    )
    model: ModelInfo
    demo: bool = Field(description="True when a demo bundle made this result: it means nothing.")
    # Optional so that results recorded before it existed still decode.
    evidence: list[Finding] | None = Field(
        default=None,
        description="What the file's metadata says about its origin (C2PA, IPTC, generator "
        "tags). Empty when nothing was found, which proves nothing: metadata is easy to strip.",
    )


class _Message(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    schema_version: Literal[1] = 1
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    submitted_at: float


class ImageJob(_Message):
    """preprocessor -> feature_extractor: one image, as either

    - ``pixels``: prepared by the preprocessor, uint8 RGB, ``height`` x ``width`` x 3; or
    - ``upload``: the file as uploaded, its header already checked (format, pixel count, decode
      memory), decoded and prepared by the feature extractor (deferred decode, issue #14). A
      feature extractor from before #14 refuses such a record (unknown field), so upgrade the
      feature extractors before the preprocessors, or set PENGUIN12_DEFER_DECODE=false meanwhile.
    """

    pixels: bytes | None = None
    height: int | None = Field(None, gt=0)
    width: int | None = Field(None, gt=0)
    # None (off the wire) unless the decode is deferred.
    upload: bytes | None = None
    content_sha256: str = Field(
        description="sha256 of the prepared pixels (of the upload when deferred). Informative: "
        "the extractor recomputes it for its cache key and never trusts this value."
    )
    source_format: str
    # How the pixels were prepared (Preprocessing.key); the feature extractor refuses pixels
    # prepared for another model. None only from producers that predate the field.
    preprocessing: str | None = None
    # Read from the original upload bytes, which only the preprocessor holds. Sent only when
    # something was found (None, not [], by default) so older consumers keep accepting the rest.
    evidence: list[Finding] | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _one_image(self) -> ImageJob:
        if (self.pixels is None) == (self.upload is None):
            raise ValueError("exactly one of pixels and upload must be given")
        if self.pixels is not None and (self.height is None or self.width is None):
            raise ValueError("pixels need height and width")
        return self

    def array(self) -> np.ndarray:
        if self.pixels is None or self.height is None or self.width is None:
            raise ValueError("the job carries the upload, not prepared pixels")
        expected = self.height * self.width * 3
        if len(self.pixels) != expected:
            raise ValueError(f"pixels hold {len(self.pixels)} bytes, expected {expected}")
        return np.frombuffer(self.pixels, dtype=np.uint8).reshape(self.height, self.width, 3)


class FeaturesMessage(_Message):
    """feature_extractor -> classifier: one float32 embedding."""

    embedding: bytes
    model: ModelInfo
    cache_hit: bool
    # Passed on unchanged from the ImageJob, for the classifier's verdict.
    evidence: list[Finding] | None = Field(default=None, max_length=64)

    def vector(self) -> np.ndarray:
        if len(self.embedding) % 4:
            raise ValueError("embedding byte length is not a multiple of 4 (float32)")
        return np.frombuffer(self.embedding, dtype=np.float32)


class StatusUpdate(_Message):
    """Any service -> provenance: one step of a job's life."""

    status: JobStatus
    at: float = Field(default_factory=time.time)
    service: str
    result: Result | None = None
    error: str | None = None
    # PENDING only: where to POST the final state (a webhook), as the client asked.
    callback_url: str | None = Field(default=None, max_length=2048)
    # PENDING only, when API keys are on: a digest of the key that submitted the job (never the
    # key), so that only that key may read the job's status. Off the wire when None.
    owner: str | None = Field(default=None, max_length=64)
    # Re-drive a job after a fix (`penguin12-dlq replay`): the one update allowed to move
    # a job back (to PENDING), never a COMPLETED one; the updates after it in the status log are
    # the new run's (see penguin12.state).
    # None (not False) by default, so the field is not on the wire unless used: consumers from
    # before it existed (extra="forbid") keep accepting every other update during an upgrade.
    reopen: bool | None = None


class JobState(BaseModel):
    """What `GET /v1/status/{request_id}` answers: the shape of the seed spec."""

    request_id: str
    status: JobStatus
    submitted_at: float
    last_updated: float
    result: Result | None = None
    error: str | None = None


class SubmitResponse(BaseModel):
    request_id: str
    status_url: str
    webhook_secret: str | None = Field(
        None,
        description="With a callback_url (and signing on): this job's own webhook signing "
        "secret. Keep it; verify X-Penguin12-Signature with it (docs/clients.md).",
    )


class ErrorResponse(BaseModel):
    detail: str


class FieldErrors(BaseModel):
    """FastAPI's own 422 answer when request fields have the wrong type or size."""

    detail: list[dict[str, Any]]


M = TypeVar("M", bound="_Message")


class PoisonMessage(ValueError):
    """A record that can never be processed: wrong version, bad JSON, missing fields."""

    def __init__(
        self, reason: str, request_id: str | None = None, submitted_at: float | None = None
    ):
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id
        self.submitted_at = submitted_at


# The binary frame of an image job (issue #14), versioned apart from the message's fields:
#   b"\x00P12" | frame version (1 byte) | which field is the image (1 byte: 1 upload, 2 pixels) |
#   header length (4 bytes, big-endian) | header: every other field, as the JSON record has them |
#   the image's bytes, to the end of the record.
FRAME_MAGIC = b"\x00P12"
FRAME_VERSION = 1
_FRAME = struct.Struct(">4sBBI")
_FRAMED_FIELDS = {1: "upload", 2: "pixels"}


def decode(model: type[M], raw: bytes | None) -> M:
    """Parse a Kafka value (JSON or framed) into ``model`` or raise `PoisonMessage` saying why,
    in plain words.

    The request id is salvaged from a broken record where possible, so the job can be marked FAILED
    instead of staying PENDING forever.
    """
    if raw is None:
        raise PoisonMessage("empty record (no value)")
    if raw[: len(FRAME_MAGIC)] == FRAME_MAGIC:
        return _decode_frame(model, raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _poison(model, exc, *salvage_ids(raw)) from exc


def _decode_frame(model: type[M], raw: bytes) -> M:
    if len(raw) < _FRAME.size:
        raise PoisonMessage("binary record shorter than its frame header")
    _, version, code, length = _FRAME.unpack_from(raw)
    header = _frame_header(raw)
    ids = _ids(header)
    if version != FRAME_VERSION:
        reason = f"unsupported binary frame version {version} (expected {FRAME_VERSION})"
        raise PoisonMessage(reason, *ids)
    field = _FRAMED_FIELDS.get(code)
    end = _FRAME.size + length
    if field is None or header is None or len(raw) < end:
        reason = (
            "binary record is malformed (unknown image field, or a truncated or non-JSON header)"
        )
        raise PoisonMessage(reason, *ids)
    if field in header:
        raise PoisonMessage(f"binary record carries {field} twice", *ids)
    header[field] = raw[end:]
    try:
        return model.model_validate(header)
    except ValidationError as exc:
        raise _poison(model, exc, *ids) from exc


def _frame_header(raw: bytes) -> dict[str, Any] | None:
    """A framed record's header fields, or None when the frame does not hold a JSON object."""
    if len(raw) < _FRAME.size:
        return None
    length = _FRAME.unpack_from(raw)[3]
    try:
        data: Any = json.loads(raw[_FRAME.size : _FRAME.size + length])
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _poison(
    model: type[BaseModel], exc: ValidationError, request_id: str | None, submitted_at: float | None
) -> PoisonMessage:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    if first["loc"] == ("schema_version",):
        reason = f"unsupported schema_version (expected {SCHEMA_VERSION})"
    elif first["type"] == "json_invalid":
        reason = "record is not valid JSON"
    else:
        reason = f"invalid {model.__name__}: {where}: {first['msg']}"
    return PoisonMessage(reason, request_id, submitted_at)


def salvage_ids(raw: bytes) -> tuple[str | None, float | None]:
    """The request id and submit time of a record that may not decode, JSON or framed."""
    if raw[: len(FRAME_MAGIC)] == FRAME_MAGIC:
        return _ids(_frame_header(raw))
    try:
        return _ids(json.loads(raw))
    except (ValueError, UnicodeDecodeError):
        return None, None


def _ids(data: Any) -> tuple[str | None, float | None]:
    """The request id and submit time in a record's parsed fields, where they are valid."""
    if not isinstance(data, dict):
        return None, None
    rid = data.get("request_id")
    sub = data.get("submitted_at")
    request_id = rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None
    if isinstance(sub, bool) or not isinstance(sub, int | float):
        return request_id, None
    return request_id, float(sub)


def encode(message: BaseModel, *, framed: bool = False) -> bytes:
    """The Kafka value of ``message``: JSON, or (``framed``, image jobs) the binary frame above."""
    if not framed:
        return message.model_dump_json(exclude_none=True).encode()
    for code, field in _FRAMED_FIELDS.items():
        image = getattr(message, field, None)
        if image is not None:
            header = message.model_dump_json(exclude_none=True, exclude={field}).encode()
            return b"".join(
                (_FRAME.pack(FRAME_MAGIC, FRAME_VERSION, code, len(header)), header, image)
            )
    raise ValueError(f"{type(message).__name__} has no image to frame")
