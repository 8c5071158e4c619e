"""ONNX Runtime backbone: agreement with torch, the export cache, runtime choice and fallback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import penguin12_model.onnx_runtime as onnx_runtime
import penguin12_model.torch_family as engine  # the torch family holds the ORT self-check
from penguin12_model import FeatureExtractorModel, ModelLoadError, ModelSettings
from penguin12_model.onnx_runtime import onnx_cache_path
from penguin12_model.torch_family import relative_max_error

BundleFactory = Callable[..., Path]


def _images(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _load(**settings: object) -> FeatureExtractorModel:
    model = FeatureExtractorModel(ModelSettings(**settings))  # type: ignore[arg-type]
    model.load()
    return model


@pytest.fixture
def count_exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = onnx_runtime.export_onnx

    def spy(module, config):  # type: ignore[no-untyped-def]
        calls.append(config.architecture)
        return real(module, config)

    monkeypatch.setattr(onnx_runtime, "export_onnx", spy)
    return calls


@pytest.mark.parametrize("architecture", ["tiny", "efficientnet_b0"])
def test_onnxruntime_matches_torch(architecture: str, model_cache: Path) -> None:
    """Random weights, batch 1 and 5: max |ort - torch| <= 1e-4 of the output scale."""
    common = {"source": "demo", "demo_architecture": architecture, "cache_dir": model_cache}
    ort = _load(runtime="onnxruntime", **common)
    ref = _load(runtime="torch", channels_last=False, **common)
    assert (ort.runtime, ref.runtime) == ("onnxruntime", "torch")
    assert ort.self_check_error is not None and ort.self_check_error <= 1e-4
    assert ort.info == ref.info  # the runtime is not part of the model identity
    for n in (1, 5):
        imgs = _images(n, seed=n)
        got, want = ort.embed(imgs), ref.embed(imgs)
        assert got.shape == want.shape == (n, ort.config.embedding_dim)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert relative_max_error(got, want) <= 1e-4
    readonly = _images(2)
    readonly.flags.writeable = False
    np.testing.assert_array_equal(ort.embed(readonly), ort.embed(_images(2)))
    assert ort.embed(_images(0)).shape == (0, ort.config.embedding_dim)


def test_default_is_onnxruntime_and_logged(
    make_bundle: BundleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    assert ModelSettings().runtime == "auto"
    with caplog.at_level(logging.INFO, logger="penguin12.model"):
        fe = _load(source="local", dir=make_bundle())
    assert fe.runtime == "onnxruntime"
    assert any("runtime=onnxruntime" in r.getMessage() for r in caplog.records)


def test_export_cache_is_reused(
    make_bundle: BundleFactory, tmp_path: Path, count_exports: list[str]
) -> None:
    settings = {"source": "local", "dir": make_bundle(), "cache_dir": tmp_path / "cache"}
    first = _load(**settings)
    path = onnx_cache_path(tmp_path / "cache", first.bundle)
    assert count_exports == ["tiny"] and path.is_file()
    assert first.info.version in path.name
    mtime = path.stat().st_mtime_ns
    second = _load(**settings)
    assert count_exports == ["tiny"], "the second load must not export again"
    assert second.runtime == "onnxruntime" and path.stat().st_mtime_ns == mtime
    imgs = _images(3)
    np.testing.assert_array_equal(first.embed(imgs), second.embed(imgs))
    # Other weights -> other version -> another export.
    _load(source="local", dir=make_bundle(seed=1), cache_dir=tmp_path / "cache")
    assert count_exports == ["tiny", "tiny"]


def test_corrupt_cached_export_is_replaced(
    make_bundle: BundleFactory,
    tmp_path: Path,
    count_exports: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = {"source": "local", "dir": make_bundle(), "cache_dir": tmp_path}
    path = onnx_cache_path(tmp_path, _load(**settings).bundle)
    path.write_bytes(b"not an onnx file")
    with caplog.at_level(logging.WARNING, logger="penguin12.model"):
        fe = _load(**settings)
    assert fe.runtime == "onnxruntime" and len(count_exports) == 2
    assert "unusable" in caplog.text and path.stat().st_size > 1000


def test_unwritable_cache_exports_in_memory(
    make_bundle: BundleFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="penguin12.model"):
        fe = _load(source="local", dir=make_bundle(), cache_dir=blocker)
    assert fe.runtime == "onnxruntime" and "from memory" in caplog.text


def test_runtime_torch_forces_torch(
    make_bundle: BundleFactory, tmp_path: Path, count_exports: list[str]
) -> None:
    fe = _load(source="local", dir=make_bundle(), runtime="torch", cache_dir=tmp_path)
    assert fe.runtime == "torch" and fe.self_check_error is None
    assert count_exports == [] and not (tmp_path / "onnx").exists()
    assert fe.embed(_images(2)).shape == (2, 64)


def test_runtime_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENGUIN12_MODEL_RUNTIME", "torch")
    assert ModelSettings().runtime == "torch"
    monkeypatch.setenv("PENGUIN12_MODEL_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="runtime"):
        ModelSettings()


def test_failing_self_check_falls_back_to_torch(
    make_bundle: BundleFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = make_bundle()
    monkeypatch.setattr(engine, "ORT_SELF_CHECK_TOLERANCE", -1.0)  # any error, even 0, fails
    with caplog.at_level(logging.WARNING, logger="penguin12.model"):
        fe = _load(source="local", dir=bundle)
    assert fe.runtime == "torch" and fe.self_check_error is not None
    warning = next(r for r in caplog.records if "differ from torch" in r.getMessage())
    assert warning.levelno == logging.WARNING and "torch eager instead" in warning.getMessage()
    reference = _load(source="local", dir=bundle, runtime="torch").embed(_images(2))
    np.testing.assert_array_equal(fe.embed(_images(2)), reference)
    # Asked for explicitly, a mismatch is an error instead of a silent downgrade.
    with pytest.raises(ModelLoadError, match="differ from torch"):
        _load(source="local", dir=bundle, runtime="onnxruntime")


def test_without_onnxruntime(
    make_bundle: BundleFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(engine, "onnxruntime_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="penguin12.model"):
        assert _load(source="local", dir=make_bundle()).runtime == "torch"
    assert "not installed" in caplog.text
    with pytest.raises(ModelLoadError, match="not installed"):
        _load(source="local", dir=make_bundle(), runtime="onnxruntime")


def test_failing_export_falls_back(
    make_bundle: BundleFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(module, config):  # type: ignore[no-untyped-def]
        raise ModelLoadError("exporter exploded")

    monkeypatch.setattr(onnx_runtime, "export_onnx", broken)
    settings = {"source": "local", "dir": make_bundle(), "cache_dir": tmp_path}
    with caplog.at_level(logging.WARNING, logger="penguin12.model"):
        assert _load(**settings).runtime == "torch"
    assert "exporter exploded" in caplog.text
    with pytest.raises(ModelLoadError, match="exporter exploded"):
        _load(runtime="onnxruntime", **settings)


def test_input_size_from_config_on_onnxruntime(make_bundle: BundleFactory) -> None:
    fe = _load(source="local", dir=make_bundle(input_size=96))
    assert fe.runtime == "onnxruntime"
    assert fe.embed(_images(3, 96)).shape == (3, 64)
    with pytest.raises(ValueError, match="input_size=96"):
        fe.embed(_images(1))


def test_relative_max_error() -> None:
    ref = np.array([[1.0, -2.0], [0.5, 0.0]], np.float32)
    assert relative_max_error(ref, ref) == 0.0
    assert relative_max_error(ref + 0.02, ref) == pytest.approx(0.01)
    assert relative_max_error(np.full((1, 2), 1e-3), np.zeros((1, 2))) == pytest.approx(1e-3)
    assert relative_max_error(ref[:1], ref) == float("inf")
    assert relative_max_error(np.full_like(ref, np.nan), ref) == float("inf")
