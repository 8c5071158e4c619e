"""Hand-made status updates for the tests that drive the job-state rules, the rebuild and the
sweeper directly: one way to write a job's history, so the modules read the same."""

from __future__ import annotations

from penguin12.schemas import JobStatus, ModelInfo, Result, StatusUpdate

MODEL = ModelInfo(name="t", version="0123456789ab", architecture="tiny", demo=True)
RESULT = Result(prediction="REAL", confidence=0.9, fake_probability=0.1, model=MODEL, demo=True)


def status_update(rid: str, status: JobStatus, at: float, **extra: object) -> StatusUpdate:
    """An update from service "t"; submitted at 1000.0 unless told, COMPLETED carries RESULT."""
    if status == JobStatus.COMPLETED:
        extra.setdefault("result", RESULT)
    return StatusUpdate(
        request_id=rid, submitted_at=extra.pop("submitted_at", 1000.0), status=status, at=at,
        service="t", **extra,  # type: ignore[arg-type]
    )  # fmt: skip
