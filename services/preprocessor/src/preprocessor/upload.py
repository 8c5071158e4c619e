"""One upload, prepared: the model's pixels and the evidence its own bytes carry.

Both run in one worker-thread call, after the image was accepted as decodable: the evidence
readers see only files the pipeline will process, and never fail them.
"""

from __future__ import annotations

import functools

from opentelemetry import trace

from penguin12.evidence import TrustSettings, read_evidence
from penguin12.imaging import PreparedImage, prepare_image
from penguin12.metrics import EVIDENCE_FINDINGS
from penguin12.schemas import Finding
from preprocessor.settings import PreprocessorSettings

tracer = trace.get_tracer("penguin12.preprocessor")


@functools.cache
def load_trust(anchors_file: str | None) -> TrustSettings:
    return TrustSettings.from_file(anchors_file)


def prepare_upload(
    data: bytes, settings: PreprocessorSettings
) -> tuple[PreparedImage, list[Finding]]:
    image = prepare_image(data, size=settings.input_size, max_pixels=settings.max_image_pixels)
    if not settings.read_evidence:
        return image, []
    with tracer.start_as_current_span("read_evidence"):
        evidence = read_evidence(data, trust=load_trust(settings.c2pa_trust_anchors_file))
    for finding in evidence:
        EVIDENCE_FINDINGS.labels(source=finding.source, finding=finding.finding).inc()
    return image, evidence
