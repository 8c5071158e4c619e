"""Evidence beside the pixels: what an image file says about where it came from.

`read_evidence` reads the original upload bytes (C2PA manifests, IPTC digital source type in XMP,
generator tags in PNG text chunks and EXIF) and returns findings; `apply_declarations` is the one
rule that lets a finding change the verdict. Reading never raises and its cost is bounded by
`Limits`, whatever the file holds: a reader that fails becomes a finding, not a failed job.

Finding codes (``Finding.finding``), by ``source``:
- ``c2pa``: ``ai_declared`` (a manifest with a valid signature declares AI generation),
  ``signed_manifest`` (valid, no AI declaration), ``untrusted_signer``, ``manifest_invalid``,
  ``manifest_unreadable``, ``manifest_missing`` (XMP refers to a manifest the file lacks).
- ``xmp``: ``ai_declared`` (IPTC digital source type of AI generation), ``source_type`` (any
  other declared source type), ``unreadable``.
- ``png``/``exif``: ``generator_parameters``, ``generator_workflow``, ``generator_software``.
- ``evidence``: ``truncated`` (a limit stopped reading), ``unreadable`` (a reader failed).
"""

from __future__ import annotations

import logging

from penguin12.evidence.c2pa_manifest import TrustAnchors, read_manifest
from penguin12.evidence.containers import Limits, find_blocks
from penguin12.evidence.generators import exif_findings, png_text_findings
from penguin12.evidence.verdict import DECLARED_AI, apply_declarations, is_declaration
from penguin12.evidence.vocabulary import (
    AI_SOURCE_TYPES,
    describe_source_type,
    source_type_code,
)
from penguin12.evidence.xmp import XmpRefused, read_xmp
from penguin12.schemas import Finding

__all__ = [
    "DECLARED_AI",
    "Limits",
    "TrustAnchors",
    "apply_declarations",
    "is_declaration",
    "read_evidence",
]

log = logging.getLogger("penguin12.evidence")
MAX_FINDINGS = 16


def read_evidence(
    data: bytes, *, trust: TrustAnchors | None = None, limits: Limits | None = None
) -> list[Finding]:
    """Everything the file's metadata says about its origin; [] when it says nothing."""
    limits = limits or Limits()
    try:
        findings = _read(data, trust or TrustAnchors(), limits)
    except Exception as exc:  # a reader bug must never fail the job; say so instead
        log.warning("evidence reader failed", exc_info=True)
        findings = [
            Finding(
                source="evidence",
                finding="unreadable",
                detail=f"The file's metadata could not be read ({type(exc).__name__}); "
                "no evidence from it is used.",
            )
        ]
    return findings[:MAX_FINDINGS]


def _read(data: bytes, trust: TrustAnchors, limits: Limits) -> list[Finding]:
    blocks = find_blocks(data, limits)
    findings: list[Finding] = []
    provenance: list[str] = []
    for packet in blocks.xmp:
        try:
            facts = read_xmp(packet)
        except XmpRefused as exc:
            findings.append(Finding(source="xmp", finding="unreadable", detail=f"{exc}."))
            continue
        provenance += facts.provenance
        findings += _source_type_findings(facts.source_types)
    if blocks.manifest_bytes > limits.max_manifest_bytes:
        findings.append(
            Finding(
                source="c2pa",
                finding="manifest_unreadable",
                detail=f"The file carries {blocks.manifest_bytes:,} bytes of C2PA data, over "
                f"the {limits.max_manifest_bytes:,}-byte limit; it was not checked.",
            )
        )
    elif blocks.manifest_bytes and len(data) > limits.max_c2pa_file_bytes:
        findings.append(
            Finding(
                source="c2pa",
                finding="manifest_unreadable",
                detail=f"The file carries a C2PA manifest, but at {len(data):,} bytes it is over "
                f"the {limits.max_c2pa_file_bytes:,}-byte limit for checking one; it was not "
                "checked.",
            )
        )
    elif blocks.manifest_bytes:
        findings += read_manifest(data, blocks.container, trust)
    elif provenance:
        findings.append(
            Finding(
                source="c2pa",
                finding="manifest_missing",
                detail="The XMP metadata says this file had a C2PA manifest "
                f"({provenance[0][:200]}), but none is embedded: it was stripped, or is "
                "stored elsewhere (Penguin12 fetches nothing over the network).",
            )
        )
    if blocks.text:
        findings += png_text_findings(blocks.text)
    if blocks.exif:
        findings += exif_findings(blocks.exif)
    if blocks.truncated:
        findings.append(
            Finding(
                source="evidence",
                finding="truncated",
                detail=f"Reading the metadata stopped early at {'; '.join(blocks.truncated)[:300]}"
                "; evidence past that point was not read.",
            )
        )
    return _unique(findings)


def _source_type_findings(values: list[str]) -> list[Finding]:
    findings = []
    for code in dict.fromkeys(source_type_code(v) for v in values):
        if code in AI_SOURCE_TYPES:
            findings.append(
                Finding(
                    source="xmp",
                    finding="ai_declared",
                    detail=f"The IPTC digital source type in the XMP metadata declares the image "
                    f"{AI_SOURCE_TYPES[code]} ({code}). It is not signed: anyone can write it, "
                    "and anyone can remove it.",
                )
            )
        else:
            findings.append(
                Finding(
                    source="xmp",
                    finding="source_type",
                    detail=f"The IPTC digital source type in the XMP metadata says the image is "
                    f"{describe_source_type(code)} ({code[:80]}). It is not signed, and it does "
                    "not prove the image is real.",
                )
            )
    return findings


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
