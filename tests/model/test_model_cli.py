"""Offline CLI (``python -m penguin12_model detect|eval``) and the metrics behind ``eval``."""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penguin12_model import cli
from penguin12_model.evaluation import (
    best_threshold,
    confusion,
    draw_roc_png,
    roc_auc,
    roc_curve,
)

PHOTOS = Path(
    os.environ.get(
        "PENGUIN12_PHOTOS",
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "photos",
    )
)
N_REAL, N_FAKE = 6, 4


@pytest.fixture
def labelled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """real/ = the six test photos (JPEG), fake/ = noise images; the tiny demo bundle."""
    root = tmp_path / "set"
    (root / "real").mkdir(parents=True)
    (root / "fake" / "nested").mkdir(parents=True)
    photos = sorted(PHOTOS.glob("*.jpg"))[:N_REAL]
    rng = np.random.default_rng(0)
    for i in range(N_REAL):
        if i < len(photos):
            shutil.copy(photos[i], root / "real" / photos[i].name)
        else:  # no shared/ checkout: smooth synthetic "photos" instead
            ramp = np.linspace(0, 255, 300, dtype=np.float32)
            img = np.stack([np.add.outer(ramp, ramp * i / 6) % 256] * 3, -1).astype(np.uint8)
            Image.fromarray(img).save(root / "real" / f"synthetic{i}.jpg", quality=90)
    for i in range(N_FAKE):
        noise = rng.integers(0, 256, (96 + 16 * i, 128, 3), dtype=np.uint8)
        folder = root / "fake" / ("nested" if i == 3 else "")
        Image.fromarray(noise).save(folder / f"noise{i}.png")
    (root / "fake" / "README.txt").write_text("not an image: skipped by the folder scan")
    monkeypatch.setenv("PENGUIN12_MODEL_SOURCE", "demo")
    monkeypatch.setenv("PENGUIN12_MODEL_DEMO_ARCHITECTURE", "tiny")
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_detect_json(labelled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "detect", str(labelled), "--json", "--batch-size", "3")
    doc = json.loads(out)
    assert doc["model"]["demo"] is True and doc["model"]["architecture"] == "tiny"
    assert (
        doc["model"]["runtime"] in ("onnxruntime", "torch") and len(doc["model"]["version"]) == 12
    )
    assert "DEMO" in err
    results = doc["results"]
    assert len(results) == N_REAL + N_FAKE
    assert [r["path"] for r in results] == sorted(r["path"] for r in results)
    assert any(r["path"].endswith("nested/noise3.png") for r in results)
    for r in results:
        p = r["fake_probability"]
        assert 0.0 <= p <= 1.0 and 0.5 <= r["confidence"] <= 1.0
        assert r["prediction"] == ("FAKE" if p >= doc["threshold"] else "REAL")
    fakes = sum(r["prediction"] == "FAKE" for r in results)
    assert doc["summary"] == {
        "images": 10,
        "fake": fakes,
        "real": 10 - fakes,
        "errors": 0,
        "seconds": doc["summary"]["seconds"],
    }
    assert code == (cli.EXIT_FAKE if fakes else cli.EXIT_REAL)
    # Batching does not change the numbers.
    _, out16, _ = _run(capsys, "detect", str(labelled), "--json", "--batch-size", "16")
    again = [r["fake_probability"] for r in json.loads(out16)["results"]]
    np.testing.assert_allclose(again, [r["fake_probability"] for r in results], atol=1e-6)


def test_detect_matches_the_service_code(
    labelled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same preprocessing (prepare_image) and the same engines as the services."""
    from penguin12.imaging import prepare_image
    from penguin12_model import ClassifierModel, FeatureExtractorModel, ModelSettings

    photo = sorted((labelled / "real").iterdir())[0]
    _, out, _ = _run(capsys, "detect", str(photo), "--json")
    settings = ModelSettings()
    fe, clf = FeatureExtractorModel(settings), ClassifierModel(settings)
    fe.load()
    clf.load()
    pixels = prepare_image(
        photo.read_bytes(), preprocessing=fe.preprocessing, max_pixels=40_000_000
    ).pixels
    expected = clf.predict(fe.embed(pixels[None]))[0].fake_probability
    assert json.loads(out)["results"][0]["fake_probability"] == pytest.approx(expected, abs=1e-6)


def test_detect_table_with_errors(
    labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff this is no JPEG")
    photo = next((labelled / "real").iterdir())
    code, out, err = _run(capsys, "detect", str(photo), str(bad), str(tmp_path / "missing.png"))
    assert code == cli.EXIT_ERROR
    assert "penguin12-demo-tiny" in out and "DEMO" in out and "DEMO" in err
    assert out.count("ERROR") == 2 and "no such file or folder" in out
    assert "3 image(s)" in out and "2 error(s)" in out


def test_detect_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "detect", str(tmp_path))
    assert code == cli.EXIT_ERROR and "no images found" in err


def test_eval_json_and_roc_png(
    labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "plots" / "roc.png"
    code, out, _ = _run(capsys, "eval", str(labelled), "--json", "--roc-png", str(png))
    assert code == 0
    rep = json.loads(out)
    assert rep["counts"] == {"real": N_REAL, "fake": N_FAKE, "unreadable": 0}
    cm = rep["confusion_matrix"]
    assert sum(cm.values()) == N_REAL + N_FAKE
    assert cm["tn"] + cm["fp"] == N_REAL and cm["fn"] + cm["tp"] == N_FAKE
    assert rep["accuracy"] == pytest.approx((cm["tn"] + cm["tp"]) / 10)
    assert 0.0 <= rep["roc_auc"] <= 1.0
    best = rep["best_threshold"]
    assert best["youden_j"] == pytest.approx(best["tpr"] - best["fpr"])
    assert best["youden_j"] >= 0 and 0 <= best["threshold"] <= 1
    assert rep["roc_png"] == str(png)
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (560, 560)
        assert len(img.getcolors(1 << 16) or []) > 3  # drawn, not blank

    # The AUC agrees with the per-image scores of `detect`.
    _, det_out, _ = _run(capsys, "detect", str(labelled), "--json")
    results = json.loads(det_out)["results"]
    y = np.array(["/fake/" in r["path"] for r in results])
    s = np.array([r["fake_probability"] for r in results])
    assert rep["roc_auc"] == pytest.approx(roc_auc(y, s))


def test_eval_table(labelled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (labelled / "fake" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, out, err = _run(capsys, "eval", str(labelled))
    assert code == 0
    for text in ("ROC AUC", "accuracy", "Youden", "confusion matrix", "6 real + 4 fake"):
        assert text in out
    assert "1 unreadable" in out and "corrupt.png" in err


def test_eval_needs_real_and_fake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "real").mkdir()
    code, _, err = _run(capsys, "eval", str(tmp_path))
    assert code == cli.EXIT_ERROR and "real/ and fake/" in err


def test_register_into_the_client_parser() -> None:
    """The penguin12 client calls register(subparsers); its global flags must survive."""
    parser = argparse.ArgumentParser(prog="penguin12")
    parser.add_argument("--no-progress", action="store_true")
    subparsers = parser.add_subparsers(dest="command", required=True)
    subparsers.add_parser("submit")
    cli.register(subparsers)
    args = parser.parse_args(["--no-progress", "detect", "a.jpg", "b", "--json"])
    assert args.func is cli.cmd_detect and args.no_progress and args.json
    assert args.paths == [Path("a.jpg"), Path("b")] and args.batch_size == 16
    args = parser.parse_args(["eval", "set", "--roc-png", "r.png", "--runtime", "torch"])
    assert args.func is cli.cmd_eval and args.roc_png == Path("r.png") and not args.no_progress


def test_python_dash_m(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["penguin12_model", "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("penguin12_model", run_name="__main__")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "detect" in out and "eval" in out


# ----------------------------------------------------------------------------- metrics


def test_roc_auc_hand_computed() -> None:
    # Pairs (positive, negative): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3/4.
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, s) == pytest.approx(0.75)
    fpr, tpr, thr = roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)
    # J = 0.5 at 0.8 and at 0.35: the higher threshold wins the tie.
    best = best_threshold(y, s)
    assert (best.threshold, best.tpr, best.fpr) == (0.8, 0.5, 0.0)


def test_roc_auc_ties_perfect_and_inverted() -> None:
    # A tie between a positive and a negative counts 1/2: (0.5 vs 0.5)=.5, the rest 1 -> 3.5/4.
    y, s = np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])
    assert roc_auc(y, s) == pytest.approx(0.875)
    fpr, tpr, _ = roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.875)  # diagonal through the tie
    assert roc_auc([0, 0, 1], [0.1, 0.2, 0.3]) == 1.0
    assert roc_auc([1, 1, 0], [0.1, 0.2, 0.3]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.7] * 4) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])


def test_roc_auc_matches_trapezoid_on_random_data() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # rounding makes many ties
    fpr, tpr, thr = roc_curve(y, s)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) < 0)
    assert roc_auc(y, s) == pytest.approx(np.trapezoid(tpr, fpr))
    # Brute force over all (positive, negative) pairs.
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(wins / (pos.size * neg.size))
    best = best_threshold(y, s)
    assert best.youden_j == pytest.approx(np.max(tpr - fpr))


def test_confusion_matrix() -> None:
    cm = confusion(np.array([0, 0, 1, 1, 1]), np.array([0.2, 0.6, 0.5, 0.4, 0.9]), 0.5)
    assert (cm.tn, cm.fp, cm.fn, cm.tp) == (1, 1, 1, 2)
    assert cm.accuracy == pytest.approx(0.6)


def test_draw_roc_png(tmp_path: Path) -> None:
    fpr, tpr, _ = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    path = draw_roc_png(tmp_path / "roc.png", fpr, tpr, 0.75, size=300)
    with Image.open(path) as img:
        assert img.size == (300, 300)
        rgb = np.asarray(img.convert("RGB"))
    blue = (rgb[..., 2] > 150) & (rgb[..., 0] < 80)
    assert blue.sum() > 100  # the curve is drawn


def test_detect_reads_the_files_own_evidence_like_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from corpus import provenance

    declared = tmp_path / "declared.jpg"
    declared.write_bytes(provenance.xmp_jpeg(provenance.xmp_packet("trainedAlgorithmicMedia")))
    tagged = tmp_path / "tagged.png"
    tagged.write_bytes(provenance.a1111_png())
    code, out, _ = _run(capsys, "detect", str(declared), str(tagged), "--json")
    first, second = json.loads(out)["results"]
    assert (first["prediction"], first["assessment"]) == ("FAKE", "declared_ai")
    assert [f["finding"] for f in first["evidence"]] == ["ai_declared"]
    assert second["assessment"] != "declared_ai"
    assert [(f["source"], f["finding"]) for f in second["evidence"]] == [
        ("png", "generator_parameters")
    ]
    assert code == cli.EXIT_FAKE
    _, table, _ = _run(capsys, "detect", str(declared))
    assert "IPTC metadata (XMP)" in table and "declares AI generation" in table
