"""What both clients send and how they read the answers: requests, errors, tickets, states.

Pure functions over httpx requests/responses plus `ClientBase` (URLs, headers, the ticket memory),
so the sync and the async client differ only in how they wait for the network.
"""

from __future__ import annotations

import json
import mimetypes
import os
from pathlib import Path
from typing import IO, Any

import httpx

from penguin12_client.models import ApiError, BatchItem, JobState, Ticket

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_KEY_HEADER = "X-API-Key"
USER_AGENT = "penguin12-client/0.1"

ImageInput = str | os.PathLike[str] | bytes | IO[bytes]
JobRef = str | Ticket


def default_status_base(base_url: str) -> str:
    """Provenance's URL for a preprocessor URL: port 8000 becomes 8001 (the local layout);
    any other URL (a gateway) serves both."""
    url = httpx.URL(base_url)
    if url.port == 8000:
        return str(url.copy_with(port=8001)).rstrip("/")
    return base_url.rstrip("/")


def read_image(image: ImageInput, filename: str | None) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) of a path, bytes or a binary file, for a multipart upload."""
    if isinstance(image, bytes):
        data, name = image, filename or "image"
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        data, name = path.read_bytes(), filename or path.name
    else:
        data = image.read()
        name = filename or Path(str(getattr(image, "name", "image"))).name
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, data, content_type


def api_error(response: httpx.Response) -> ApiError:
    """The service's own explanation of an error answer (``detail``), and its Retry-After."""
    try:
        body = response.json()
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, str):
            detail = json.dumps(detail if detail is not None else body)
    except ValueError:
        detail = response.text[:500] or response.reason_phrase
    retry_after = response.headers.get("Retry-After")
    return ApiError(
        response.status_code,
        detail,
        float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


def ticket_from(response: httpx.Response) -> Ticket:
    if response.status_code != 202:
        raise api_error(response)
    body = response.json()
    return Ticket(str(body["request_id"]), str(body["status_url"]))


def state_from(response: httpx.Response) -> JobState:
    if response.status_code != 200:
        raise api_error(response)
    return JobState.from_json(response.json())


def batch_from(response: httpx.Response) -> list[BatchItem]:
    try:
        body = response.json()
    except ValueError:
        raise api_error(response) from None
    if not isinstance(body, dict) or "jobs" not in body:
        raise api_error(response)
    return [BatchItem.from_json(item) for item in body["jobs"]]


def form_fields(callback_url: str | None, **extra: str | None) -> dict[str, str]:
    """The form fields of a submission; the ones not given are left out."""
    data = {k: v for k, v in extra.items() if v is not None}
    if callback_url:
        data["callback_url"] = callback_url
    return data


class ClientBase:
    """What the sync and the async client share: where to send, which headers, known tickets."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        status_base_url: str | None = None,
        api_key: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.status_base_url = (status_base_url or default_status_base(self.base_url)).rstrip("/")
        self.api_key = api_key
        self._known: dict[str, str] = {}

    def _http_options(self, timeout: float, transport: Any) -> dict[str, Any]:
        """The keyword arguments of the httpx client, sync or async."""
        return {"timeout": timeout, "headers": self._headers(), "transport": transport}

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            headers[API_KEY_HEADER] = self.api_key
        return headers

    def _remember(self, ticket: Ticket) -> Ticket:
        self._known[ticket.request_id] = ticket.status_url
        return ticket

    def status_url(self, job: JobRef) -> str:
        """Where ``job``'s status lives: its ticket's URL, else built from ``status_base_url``."""
        if isinstance(job, Ticket):
            return job.status_url
        return self._known.get(job) or f"{self.status_base_url}/v1/status/{job}"

    @staticmethod
    def _id(job: JobRef) -> str:
        return job.request_id if isinstance(job, Ticket) else job
