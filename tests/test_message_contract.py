"""The wire format of schema_version 1, pinned by records committed in tests/contracts/v1/.

During a rolling upgrade (compose recreating one service at a time, a replica restarted with a
newer image) old and new versions share the topics, both ways round:
- records an older version wrote must still decode (new fields are optional), and
- records a newer version writes must still decode in an older one: every message model has
  ``extra="forbid"``, so a field added later must stay off the wire unless it is used.
A change that breaks either is a new schema_version, not an edit of these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from penguin12 import schemas
from penguin12.schemas import FeaturesMessage, ImageJob, JobStatus, StatusUpdate

CONTRACTS = Path(__file__).parent / "contracts" / "v1"
RECORDS: dict[str, type[schemas._Message]] = {
    "image_job.json": ImageJob,
    # Since issue 10: how the pixels were prepared (a feature extractor of an older release refuses
    # it as an unknown field, so upgrade the feature extractors before the preprocessor).
    "image_job_prepared.json": ImageJob,
    "image_job_with_evidence.json": ImageJob,
    # Since issue 14: the upload as it came, decoded by the feature extractor (deferred decode;
    # upgrade the feature extractors before the preprocessor, as for `preprocessing`).
    "image_job_upload.json": ImageJob,
    "features.json": FeaturesMessage,
    "features_with_evidence.json": FeaturesMessage,
    "status_processing.json": StatusUpdate,
    "status_pending_with_callback.json": StatusUpdate,
    "status_completed.json": StatusUpdate,
    # Since issue 10: the assessment and the model's family, licence, origin and caveat.
    "status_completed_assessed.json": StatusUpdate,
    "status_completed_declared_ai.json": StatusUpdate,
    "status_failed.json": StatusUpdate,
    "status_reopen.json": StatusUpdate,
}


def _record(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONTRACTS / name).read_text())
    return data


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_v1_record_decodes_and_encodes_back_unchanged(name: str) -> None:
    raw = json.dumps(_record(name)).encode()
    message = schemas.decode(RECORDS[name], raw)
    assert json.loads(schemas.encode(message)) == _record(name)


def test_every_committed_contract_is_checked() -> None:
    assert {p.name for p in CONTRACTS.glob("*.json")} == set(RECORDS)


def test_fields_left_unset_stay_off_the_wire() -> None:
    """What today's services send when they use no optional field: exactly the v1 keys."""
    common = {"request_id": "r-1", "submitted_at": 1.0}
    sent = {
        "status_processing.json": StatusUpdate(
            **common, status=JobStatus.PROCESSING_FEATURES, at=2.0, service="feature_extractor"
        ),
        "image_job.json": ImageJob(
            **common,
            pixels=b"\x00" * 12,
            height=2,
            width=2,
            content_sha256="0" * 64,
            source_format="PNG",
        ),
    }
    for name, message in sent.items():
        assert set(json.loads(schemas.encode(message))) == set(_record(name)), name


def test_an_unknown_field_is_refused_as_poison_with_the_job_id() -> None:
    """The other side of the rule above: why new fields must stay off the wire by default."""
    record = {**_record("status_processing.json"), "priority": 5}
    with pytest.raises(schemas.PoisonMessage) as refused:
        schemas.decode(StatusUpdate, json.dumps(record).encode())
    assert "priority" in refused.value.reason
    assert refused.value.request_id == record["request_id"]


@pytest.mark.parametrize(
    "change",
    [
        {"upload": "AAEC"},  # both the pixels and the upload
        {"pixels": None, "height": None, "width": None},  # neither
        {"height": None},  # pixels without their shape
    ],
    ids=["both", "neither", "pixels-without-shape"],
)
def test_an_image_job_carries_exactly_one_image(change: dict[str, Any]) -> None:
    record = {**_record("image_job.json"), **change}
    record = {k: v for k, v in record.items() if v is not None}
    with pytest.raises(schemas.PoisonMessage) as refused:
        schemas.decode(ImageJob, json.dumps(record).encode())
    assert refused.value.request_id == record["request_id"]


def _upload_job(upload: bytes) -> ImageJob:
    return ImageJob(
        request_id="r-1",
        submitted_at=1.0,
        upload=upload,
        content_sha256="0" * 64,
        source_format="PNG",
    )


def test_a_deferred_upload_round_trips_byte_for_byte() -> None:
    upload = bytes(range(256)) * 3
    job = _upload_job(upload)
    wire = schemas.encode(job)
    assert set(json.loads(wire)) == set(_record("image_job_upload.json"))  # nothing else sent
    decoded = schemas.decode(ImageJob, wire)
    assert decoded.upload == upload and decoded.pixels is None
    with pytest.raises(ValueError, match="not prepared pixels"):
        decoded.array()


# The binary frame of an image job (issue #14): the image as raw bytes after a JSON header. Its
# committed records are the v1 JSON records above, framed; both must keep decoding to the same job.
FRAMES = Path(__file__).parent / "contracts" / "frame-v1"
FRAMED = {
    "image_job_upload.bin": "image_job_upload.json",
    "image_job_with_evidence.bin": "image_job_with_evidence.json",
}


@pytest.mark.parametrize("name", sorted(FRAMED))
def test_a_framed_record_decodes_to_the_json_records_job_and_encodes_back(name: str) -> None:
    framed = (FRAMES / name).read_bytes()
    assert framed[:4] == schemas.FRAME_MAGIC
    job = schemas.decode(ImageJob, framed)
    assert job == schemas.decode(ImageJob, (CONTRACTS / FRAMED[name]).read_bytes())
    assert schemas.encode(job, framed=True) == framed
    assert json.loads(schemas.encode(job)) == _record(FRAMED[name])


def test_every_committed_frame_is_checked() -> None:
    assert {p.name for p in FRAMES.iterdir()} == set(FRAMED)


def test_a_framed_image_travels_raw_and_whole() -> None:
    """The point of the frame: no base64 (a third more bytes), and every byte value survives."""
    upload = bytes(range(256)) * 1000
    job = _upload_job(upload)
    framed, as_json = schemas.encode(job, framed=True), schemas.encode(job)
    assert len(framed) < len(upload) + 200 and len(as_json) > len(upload) * 4 // 3
    assert framed.endswith(upload) and schemas.decode(ImageJob, framed).upload == upload


def _frame(header: bytes, image: bytes = b"\x01\x02", *, version: int = 1, field: int = 1) -> bytes:
    return schemas._FRAME.pack(schemas.FRAME_MAGIC, version, field, len(header)) + header + image


_HEADER = json.dumps(
    {
        "schema_version": 1,
        "request_id": "r-9",
        "submitted_at": 5.0,
        "content_sha256": "0" * 64,
        "source_format": "PNG",
    }
).encode()


@pytest.mark.parametrize(
    ("raw", "reason", "named"),
    [
        (_frame(_HEADER, version=2), "unsupported binary frame version 2", True),
        (_frame(_HEADER, field=7), "malformed", True),
        (_frame(_HEADER)[: len(_HEADER) // 2], "malformed", False),  # cut inside the header
        (_frame(b"[1, 2]"), "malformed", False),
        (_frame(_HEADER.replace(b'"PNG"', b'"PNG", "upload": "AA=="')), "upload twice", True),
        (_frame(_HEADER.replace(b'"schema_version": 1', b'"schema_version": 2')), "schema_v", True),
        (_frame(_HEADER.replace(b'"source_format": "PNG"', b'"priority": 5')), "source_fo", True),
    ],
    ids=["frame-version", "image-field", "truncated", "not-an-object", "twice", "schema", "shape"],
)
def test_a_malformed_frame_is_poison_that_names_the_job_where_it_can(
    raw: bytes, reason: str, named: bool
) -> None:
    """Named: the header survived, so the job can be failed by its id instead of staying PENDING."""
    with pytest.raises(schemas.PoisonMessage) as refused:
        schemas.decode(ImageJob, raw)
    assert reason in refused.value.reason
    assert (refused.value.request_id, refused.value.submitted_at) == (
        ("r-9", 5.0) if named else (None, None)
    )


def test_a_frame_is_not_a_status_update() -> None:
    """Only image jobs are framed: anything else read from a frame is refused, not guessed at."""
    with pytest.raises(schemas.PoisonMessage, match="invalid StatusUpdate"):
        schemas.decode(StatusUpdate, _frame(_HEADER))
    with pytest.raises(ValueError, match="no image"):
        schemas.encode(
            StatusUpdate(request_id="r", submitted_at=1, status="PENDING", service="x"), framed=True
        )


def test_a_truncated_dead_letter_still_names_its_job() -> None:
    """Dead letters keep only the start of a big record: the frame's header is at the start."""
    framed = _frame(_HEADER, b"\xff" * 10_000)
    assert schemas.salvage_ids(framed[:300]) == ("r-9", 5.0)
    assert schemas.salvage_ids(json.dumps({"request_id": "r-9", "submitted_at": 5.0}).encode()) == (
        "r-9",
        5.0,
    )
    assert schemas.salvage_ids(b"\x00P12") == (None, None)
