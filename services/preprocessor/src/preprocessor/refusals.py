"""Refusing a submission: the HTTP error a client sees, counted by outcome in one place."""

from __future__ import annotations

from fastapi import HTTPException

from penguin12.metrics import JOBS_SUBMITTED


def refuse(
    outcome: str, code: int, detail: str, headers: dict[str, str] | None = None
) -> HTTPException:
    """The error to raise for a refused submission (``outcome`` labels
    ``penguin12_jobs_submitted_total``)."""
    JOBS_SUBMITTED.labels(outcome=outcome).inc()
    return HTTPException(status_code=code, detail=detail, headers=headers)


def backlog_full(max_backlog: int) -> HTTPException:
    return refuse(
        "backlog",
        429,
        f"The queue holds more than {max_backlog:,} jobs; retry later.",
        {"Retry-After": "10"},
    )


def key_in_progress() -> HTTPException:
    return refuse(
        "in_progress",
        409,
        "A request with this Idempotency-Key is still being accepted; retry in a moment to get "
        "its ticket.",
        {"Retry-After": "1"},
    )
