"""C2PA manifests, read and validated by the Content Authenticity Initiative's own library.

Validation is offline: no remote manifest is fetched, no OCSP responder asked, no network host
allowed. Whether a signer is *trusted* depends on the trust anchors the operator configures
(`TrustAnchors`); without any, a manifest whose signature verifies is reported as valid but
signed by someone nobody vouched for.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from penguin12.evidence.vocabulary import (
    AI_SOURCE_TYPES,
    describe_source_type,
    source_type_code,
)
from penguin12.schemas import Finding

log = logging.getLogger("penguin12.evidence.c2pa")

_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_MAX_NAME = 120
# C2PA validation failure codes, in words.
_FAILURES = {
    "claimSignature.mismatch": "the signature does not match the signed claim",
    "claimSignature.missing": "the claim has no signature",
    "assertion.dataHash.mismatch": "the image bytes changed after signing",
    "assertion.boxesHash.mismatch": "the image bytes changed after signing",
    "assertion.hashedURI.mismatch": "a signed statement was altered",
    "assertion.missing": "a signed statement is missing",
    "signingCredential.invalid": "the signing certificate is invalid",
    "signingCredential.expired": "the signing certificate had expired",
    "signingCredential.revoked": "the signing certificate was revoked",
    "claim.malformed": "the claim is malformed",
}


@dataclass(frozen=True)
class TrustAnchors:
    """PEM trust anchors (root certificates) that make a signer *trusted*; empty: none is."""

    anchors_pem: str = ""

    @classmethod
    def from_file(cls, path: str | None) -> TrustAnchors:
        return cls(Path(path).read_text() if path else "")

    def c2pa_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "verify": {
                "verify_trust": bool(self.anchors_pem),
                "verify_timestamp_trust": False,
                "ocsp_fetch": False,
                "remote_manifest_fetch": False,
            },
            "core": {"allowed_network_hosts": []},
        }
        if self.anchors_pem:
            settings["trust"] = {"trust_anchors": self.anchors_pem}
        return settings


def read_manifest(data: bytes, container: str, trust: TrustAnchors) -> list[Finding]:
    """Findings about the C2PA manifest embedded in ``data`` (the caller knows there is one)."""
    import c2pa  # the native library is loaded only when a file carries a manifest

    mime = _MIME.get(container)
    if mime is None:
        return []
    try:
        context = c2pa.Context(c2pa.Settings.from_dict(trust.c2pa_settings()))
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
        if reader is None:  # the JUMBF boxes hold no C2PA manifest store
            return []
        with reader:
            store = json.loads(reader.json())
    except (c2pa.C2paError, ValueError, TypeError, OSError) as exc:
        return [_unreadable(exc)]
    return _judge(store, trusted_list=bool(trust.anchors_pem))


def _unreadable(exc: Exception) -> Finding:
    reason = (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]
    return Finding(
        source="c2pa",
        finding="manifest_unreadable",
        detail="The file carries C2PA data that cannot be read, so nothing in it is used "
        f"({reason}).",
    )


def _judge(store: dict[str, Any], *, trusted_list: bool) -> list[Finding]:
    active = store.get("manifests", {}).get(store.get("active_manifest") or "")
    if not isinstance(active, dict):
        return [
            Finding(
                source="c2pa",
                finding="manifest_unreadable",
                detail="The file carries C2PA data without an active manifest; nothing is used.",
            )
        ]
    state = str(store.get("validation_state") or "Invalid")
    results = store.get("validation_results", {}).get("activeManifest", {}) or {}
    failures = [str(f.get("code")) for f in results.get("failure", []) if isinstance(f, dict)]
    untrusted = "signingCredential.untrusted" in failures
    broken = [f for f in failures if f != "signingCredential.untrusted"]
    generator = _generator(active)
    signer = _signer(active)
    codes = _source_types(active)
    ai = [c for c in codes if c in AI_SOURCE_TYPES]
    made = f"made with {generator}, " if generator else ""
    if state == "Invalid" or broken:
        claim = (
            f" It claims the image is {AI_SOURCE_TYPES[ai[0]]}, but the claim does not count."
            if ai
            else ""
        )
        return [
            Finding(
                source="c2pa",
                finding="manifest_invalid",
                detail=f"The C2PA manifest ({made}signed by {signer}) does not verify: "
                f"{_reasons(broken)}. The file was changed after "
                f"signing, or the manifest was forged or damaged.{claim}",
            )
        ]
    if not trusted_list:
        trust_note = "No trust list is configured, so who signed it is not vouched for."
    elif untrusted:
        trust_note = "The signer's certificate is not on the configured trust list."
    else:
        trust_note = "The signer is on the configured trust list."
    findings: list[Finding] = []
    if ai:
        findings.append(
            Finding(
                source="c2pa",
                finding="ai_declared",
                detail=f"A C2PA manifest with a valid signature ({made}signed by {signer}) "
                f"declares the image {AI_SOURCE_TYPES[ai[0]]} (IPTC digital source type "
                f"{ai[0]}). {trust_note}",
            )
        )
    else:
        declared = (
            f"declares the source {describe_source_type(codes[0])} ({codes[0]})"
            if codes
            else "declares no digital source type"
        )
        findings.append(
            Finding(
                source="c2pa",
                finding="signed_manifest",
                detail=f"A C2PA manifest with a valid signature ({made}signed by {signer}) "
                f"{declared}. A manifest records what its signer said; it does not prove the "
                f"image is real. {trust_note}",
            )
        )
    if untrusted and trusted_list:
        findings.append(
            Finding(
                source="c2pa",
                finding="untrusted_signer",
                detail=f"The manifest's signer ({signer}) does not chain to a configured trust "
                "anchor.",
            )
        )
    return findings


def _reasons(codes: list[str]) -> str:
    words = [f"{_FAILURES[c]} ({c})" if c in _FAILURES else c for c in codes[:4]]
    return "; ".join(dict.fromkeys(words)) or "validation failed"


def _generator(manifest: dict[str, Any]) -> str:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict) and info[0].get("name"):
        name = str(info[0]["name"])
        version = info[0].get("version")
        return (f"{name} {version}" if version else name)[:_MAX_NAME]
    return str(manifest.get("claim_generator") or "")[:_MAX_NAME]


def _signer(manifest: dict[str, Any]) -> str:
    info = manifest.get("signature_info") or {}
    names = [str(info[k]) for k in ("common_name", "issuer") if info.get(k)]
    if len(names) == 2 and names[0] != names[1]:
        return f"{names[0]} ({names[1]})"[:_MAX_NAME]
    return (names[0] if names else "an unnamed signer")[:_MAX_NAME]


def _source_types(manifest: dict[str, Any]) -> list[str]:
    """The IPTC codes the active manifest's c2pa.actions assertions declare, AI ones first."""
    codes: list[str] = []
    for assertion in manifest.get("assertions", []):
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith(
            "c2pa.actions"
        ):
            continue
        for action in (assertion.get("data") or {}).get("actions", []):
            value = action.get("digitalSourceType") if isinstance(action, dict) else None
            if isinstance(value, str) and value:
                code = source_type_code(value)
                if code not in codes:
                    codes.append(code)
    return sorted(codes, key=lambda c: c not in AI_SOURCE_TYPES)
