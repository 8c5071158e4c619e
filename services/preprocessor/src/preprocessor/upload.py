"""The evidence an upload's own bytes carry (C2PA, IPTC XMP, PNG text, EXIF), read after the image
was accepted as decodable: the readers see only files the pipeline will process, and never fail
them (a reader that cannot cope reports a finding instead)."""

from __future__ import annotations

from typing import BinaryIO

from penguin12.evidence import TrustAnchors, read_evidence
from penguin12.metrics import EVIDENCE_FINDINGS
from penguin12.schemas import Finding
from preprocessor.settings import PreprocessorSettings


def upload_evidence(
    source: BinaryIO | bytes, settings: PreprocessorSettings, trust: TrustAnchors
) -> list[Finding]:
    """Findings from the original upload (held to max_upload_bytes); [] when reading is off."""
    if not settings.read_evidence:
        return []
    if isinstance(source, bytes):
        data = source
    else:  # the spooled upload: the C2PA hash covers the whole file, so read it whole, once
        source.seek(0)
        data = source.read(settings.max_upload_bytes + 1)
    evidence = read_evidence(data, trust=trust)
    for finding in evidence:
        EVIDENCE_FINDINGS.labels(source=finding.source, finding=finding.finding).inc()
    return evidence
