"""What the Penguin12 APIs answer, as small typed objects.

Mirrors of the server's wire schemas (``penguin12.schemas``), kept here because this package is
published on its own and must not depend on the services; tests/test_sdk_models.py checks that
every field matches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"COMPLETED", "FAILED"})


@dataclass(frozen=True)
class ModelInfo:
    """Which model made a result: the SDK's mirror of the server's one ``ModelInfo`` schema
    (``penguin12.schemas``; tests/test_sdk_models.py keeps them alike). ``family`` reads as
    ``torch`` from servers that predate model families, which served torch models only."""

    name: str
    version: str
    architecture: str
    demo: bool
    family: str = "torch"
    license: str | None = None
    origin: str | None = None
    caveat: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        def text(key: str) -> str | None:
            value = data.get(key)
            return str(value) if value is not None else None

        return cls(
            name=str(data.get("name", "")),
            version=str(data.get("version", "")),
            architecture=str(data.get("architecture", "")),
            demo=bool(data.get("demo", False)),
            family=str(data.get("family", "torch")),
            license=text("license"),
            origin=text("origin"),
            caveat=text("caveat"),
        )


# Where a finding was read, in words (``Finding.source``).
EVIDENCE_SOURCES = {
    "c2pa": "Content Credentials (C2PA)",
    "xmp": "IPTC metadata (XMP)",
    "png": "PNG text",
    "exif": "EXIF",
    "evidence": "Metadata reader",
}


@dataclass(frozen=True)
class Finding:
    """What the file's own metadata says about its origin (not its pixels).

    ``finding`` is a short code (``ai_declared``, ``manifest_invalid``, ``generator_software``,
    ...), ``detail`` the same in words. Metadata is easy to strip or forge: a finding can say an
    image was made with AI; no finding, or a missing one, ever says it is real.
    """

    source: str
    finding: str
    detail: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(
            source=str(data.get("source", "")),
            finding=str(data.get("finding", "")),
            detail=str(data.get("detail", "")),
        )

    @property
    def source_words(self) -> str:
        return EVIDENCE_SOURCES.get(self.source, self.source)


@dataclass(frozen=True)
class Result:
    """A verdict. ``demo`` is True when a demo model (random weights) made it: it means nothing.

    ``assessment`` (likely_real / inconclusive / likely_fake) reads the calibrated
    ``fake_probability`` through the model's abstain band; ``model.caveat`` says what it is not.
    ``assessment`` is ``declared_ai`` when the file itself declares AI generation (a valid C2PA
    manifest or an IPTC source type): the prediction is then FAKE whatever the pixels say, and
    ``fake_probability`` stays the pixel model's own estimate. ``evidence`` is None from servers
    that do not read metadata, else the findings (empty: nothing found, which proves nothing).
    """

    prediction: str
    confidence: float
    fake_probability: float
    demo: bool
    model: ModelInfo | None
    assessment: str | None = None
    evidence: tuple[Finding, ...] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        model = data.get("model")
        evidence = data.get("evidence")
        return cls(
            prediction=str(data["prediction"]),
            confidence=float(data["confidence"]),
            fake_probability=float(data.get("fake_probability", 0.0)),
            demo=bool(data.get("demo", False)),
            model=ModelInfo.from_json(model) if isinstance(model, dict) else None,
            assessment=str(data["assessment"]) if data.get("assessment") is not None else None,
            evidence=tuple(Finding.from_json(f) for f in evidence if isinstance(f, dict))
            if isinstance(evidence, list)
            else None,
        )

    @property
    def is_fake(self) -> bool:
        return self.prediction.upper() == "FAKE"

    @property
    def declared_ai(self) -> bool:
        return self.assessment == "declared_ai"


@dataclass(frozen=True)
class JobState:
    """The body of ``GET /v1/status/{request_id}``."""

    request_id: str
    status: str
    submitted_at: float
    last_updated: float
    result: Result | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobState:
        result = data.get("result")
        return cls(
            request_id=str(data["request_id"]),
            status=str(data["status"]),
            submitted_at=float(data.get("submitted_at", 0.0)),
            last_updated=float(data.get("last_updated", 0.0)),
            result=Result.from_json(result) if isinstance(result, dict) else None,
            error=data.get("error"),
            raw=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class Ticket:
    """The 202 answer: where to follow the job."""

    request_id: str
    status_url: str


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch submission: a ticket, or why it was refused."""

    filename: str | None
    ticket: Ticket | None
    error: str | None = None
    status_code: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchItem:
        ticket = (
            Ticket(str(data["request_id"]), str(data["status_url"]))
            if data.get("request_id") and data.get("status_url")
            else None
        )
        return cls(
            filename=data.get("filename"),
            ticket=ticket,
            error=data.get("error"),
            status_code=data.get("status"),
        )


class Penguin12Error(Exception):
    """Base of every error this client raises."""


class ApiError(Penguin12Error):
    """The service answered with an error status; ``detail`` is its explanation."""

    def __init__(self, status_code: int, detail: str, retry_after: float | None = None):
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after


class WaitTimeout(Penguin12Error, TimeoutError):
    """The job did not finish in time; ``last_state`` is the latest state seen."""

    def __init__(self, request_id: str, timeout: float, last_state: JobState | None):
        status = last_state.status if last_state else "unknown"
        super().__init__(f"job {request_id} not finished after {timeout:.0f}s (status {status})")
        self.request_id = request_id
        self.last_state = last_state
