"""Python client for Penguin12: submit images, follow jobs (long-poll or SSE), read verdicts."""

from penguin12_client.async_client import AsyncPenguin12Client
from penguin12_client.client import Penguin12Client
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
from penguin12_client.wire import DEFAULT_BASE_URL, default_status_base

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
