"""Evidence end to end: real uploads through the preprocessor, Kafka, both workers and provenance.

One stack (with a C2PA trust list) serves both tests; each test submits several samples at once
and waits for all of them, so the slow part (the stack) is paid once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus import provenance as samples

from conftest import Infra, Stack


@pytest.fixture(scope="module")
def chain() -> samples.SigningChain:
    return samples.signing_chain()


@pytest.fixture(scope="module")
def evidence_stack(
    infra: Infra,
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    chain: samples.SigningChain,
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("evidence")
    anchors = base / "trust-anchors.pem"
    anchors.write_text(chain.ca_pem)
    stack = Stack(
        infra, model_dir, base, extra_env={"PENGUIN12_C2PA_TRUST_ANCHORS_FILE": str(anchors)}
    )
    try:
        yield stack.start_all()
    finally:
        stack.stop()


def _submit_all(stack: Stack, files: dict[str, tuple[bytes, str]]) -> dict[str, dict[str, Any]]:
    ids = {}
    for name, (data, media_type) in files.items():
        response = stack.submit(data, f"{name}.{media_type.split('/')[1]}", media_type)
        assert response.status_code == 202, (name, response.text)
        ids[name] = response.json()["request_id"]
    return {name: stack.wait_final(request_id, timeout=120) for name, request_id in ids.items()}


def _codes(final: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["source"], f["finding"]) for f in final["result"]["evidence"]]


def test_declarations_decide_and_other_evidence_is_reported(
    evidence_stack: Stack, chain: samples.SigningChain, photos: dict[str, bytes]
) -> None:
    jpeg, png = "image/jpeg", "image/png"
    signed = samples.c2pa_signed(samples.jpeg(10), chain=chain)
    finals = _submit_all(
        evidence_stack,
        {
            "c2pa": (signed, jpeg),
            "c2pa_tampered": (samples.tampered_signature(signed), jpeg),
            "xmp": (samples.xmp_jpeg(samples.xmp_packet("trainedAlgorithmicMedia"), seed=11), jpeg),
            "a1111": (samples.a1111_png(12), png),
            "comfyui": (samples.comfyui_png(13), png),
            "novelai": (samples.novelai_png(14), png),
            "exif": (samples.exif_jpeg(15, Software="Adobe Firefly"), jpeg),
            "photo": (photos["coffee.jpg"], jpeg),
        },
    )
    for name, final in finals.items():
        assert final["status"] == "COMPLETED", (name, final)

    declared = {
        "c2pa": [("c2pa", "ai_declared")],
        "xmp": [("xmp", "ai_declared")],
    }
    for name, expected in declared.items():
        result = finals[name]["result"]
        assert _codes(finals[name]) == expected, name
        assert (result["prediction"], result["assessment"]) == ("FAKE", "declared_ai"), name
        assert 0.0 <= result["fake_probability"] <= 1.0  # the pixel model's, still reported
    assert "on the configured trust list" in finals["c2pa"]["result"]["evidence"][0]["detail"]
    assert (
        evidence_stack.metric(
            "preprocessor", "penguin12_evidence_findings_total", 'finding="ai_declared"'
        )
        == 2
    )

    reported_only = {
        "c2pa_tampered": [("c2pa", "manifest_invalid")],
        "a1111": [("png", "generator_parameters")],
        "comfyui": [("png", "generator_workflow")],
        "novelai": [("png", "generator_software")],
        "exif": [("exif", "generator_software")],
        "photo": [],
    }
    for name, expected in reported_only.items():
        result = finals[name]["result"]
        assert _codes(finals[name]) == expected, name
        assert result.get("assessment") != "declared_ai", name
        # The pixel model's own verdict, untouched by evidence that is not a declaration.
        assert result["confidence"] >= 0.5, name


def test_hostile_metadata_never_fails_a_job(evidence_stack: Stack) -> None:
    """Every hostile file the image decoder accepts completes, its trouble named in a finding."""
    hostile = samples.hostile()
    files = {
        name: (data, "image/png" if data.startswith(b"\x89PNG") else "image/jpeg")
        for name, data in hostile.items()
    }
    accepted: dict[str, str] = {}
    for name, (data, media_type) in files.items():
        response = evidence_stack.submit(data, f"{name}.bin", media_type)
        if response.status_code == 202:
            accepted[name] = response.json()["request_id"]
        else:  # refused by the image checks before any evidence is read: never a 5xx
            assert 400 <= response.status_code < 500, (name, response.text)
    assert {"huge_xmp_jpeg", "jumbf_deep_nesting", "manifest_corrupt", "png_text_flood"} <= set(
        accepted
    )
    for name, request_id in accepted.items():
        final = evidence_stack.wait_final(request_id, timeout=120)
        assert final["status"] == "COMPLETED", (name, final)
        assert all(f["finding"] != "ai_declared" for f in final["result"]["evidence"]), name
