"""Python client for Penguin12: submit images, follow jobs (long-poll or SSE), read verdicts."""

from penguin12_client.client import (
    DEFAULT_BASE_URL,
    AsyncPenguin12Client,
    Penguin12Client,
    default_status_base,
)
from penguin12_client.models import (
    ApiError,
    BatchItem,
    Finding,
    JobState,
    ModelInfo,
    Penguin12Error,
    Result,
    Ticket,
    WaitTimeout,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ApiError",
    "AsyncPenguin12Client",
    "BatchItem",
    "Finding",
    "JobState",
    "ModelInfo",
    "Penguin12Client",
    "Penguin12Error",
    "Result",
    "Ticket",
    "WaitTimeout",
    "default_status_base",
]
