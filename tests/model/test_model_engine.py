"""FeatureExtractorModel.embed / ClassifierModel.predict behaviour (tiny backbone)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from penguin12_model import (
    ClassifierModel,
    FeatureExtractorModel,
    ModelLoadError,
    ModelSettings,
    Prediction,
)

BundleFactory = Callable[..., Path]


def _images(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _loaded(cls, bundle: Path, **settings):
    model = cls(ModelSettings(source="local", dir=bundle, **settings))
    model.load()
    return model


def test_embed_shapes_and_values(make_bundle: BundleFactory) -> None:
    fe = _loaded(FeatureExtractorModel, make_bundle())
    assert fe.ready and fe.info.architecture == "tiny" and not fe.info.demo
    imgs = _images(4)
    emb = fe.embed(imgs)
    assert emb.shape == (4, 64) and emb.dtype == np.float32 and emb.flags.c_contiguous
    assert np.isfinite(emb).all() and (emb >= 0).all()  # ReLU + average pooling
    np.testing.assert_allclose(fe.embed(imgs[1:2])[0], emb[1], rtol=1e-4, atol=1e-5)
    assert fe.embed(imgs[:0]).shape == (0, 64)
    readonly = imgs.copy()
    readonly.flags.writeable = False
    np.testing.assert_allclose(fe.embed(readonly), emb, rtol=1e-5, atol=1e-6)


def test_channels_last_matches_contiguous(make_bundle: BundleFactory) -> None:
    bundle = make_bundle()
    imgs = _images(2, seed=1)
    a = _loaded(FeatureExtractorModel, bundle, channels_last=True, runtime="torch").embed(imgs)
    b = _loaded(FeatureExtractorModel, bundle, channels_last=False, runtime="torch").embed(imgs)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_embed_normalises_with_config(make_bundle: BundleFactory) -> None:
    """Different mean/std in config.json must change the output (normalisation is ours)."""
    imgs = _images(1)
    a = _loaded(FeatureExtractorModel, make_bundle()).embed(imgs)
    b = _loaded(
        FeatureExtractorModel, make_bundle(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    ).embed(imgs)
    assert not np.allclose(a, b)


def test_embed_validates_input(make_bundle: BundleFactory) -> None:
    fe = _loaded(FeatureExtractorModel, make_bundle())
    with pytest.raises(ValueError, match=r"\[N, 224, 224, 3\].*\[128, 128, 3\].*batch axis"):
        fe.embed(_images(1, 128)[0])
    with pytest.raises(ValueError, match="prepared by the preprocessor as squash/bilinear/224"):
        fe.embed(_images(2, 160))
    with pytest.raises(ValueError, match="uint8"):
        fe.embed(_images(1).astype(np.float32))
    with pytest.raises(RuntimeError, match="load"):
        FeatureExtractorModel(ModelSettings(source="local", dir=Path("/nonexistent"))).embed(
            _images(1)
        )


def test_input_size_from_config(make_bundle: BundleFactory) -> None:
    fe = _loaded(FeatureExtractorModel, make_bundle(input_size=96))
    assert fe.embed(_images(3, 96)).shape == (3, 64)


def test_predict_shapes_and_ranges(make_bundle: BundleFactory) -> None:
    bundle = make_bundle(head_hidden_dims=(16,))
    fe = _loaded(FeatureExtractorModel, bundle)
    clf = _loaded(ClassifierModel, bundle)
    assert clf.info == fe.info  # same bundle -> same name/version
    preds = clf.predict(fe.embed(_images(5)))
    assert len(preds) == 5 and all(isinstance(p, Prediction) for p in preds)
    for p in preds:
        assert p.prediction in ("REAL", "FAKE")
        assert 0.5 <= p.confidence <= 1.0 and 0.0 <= p.fake_probability <= 1.0
        expected = p.fake_probability if p.prediction == "FAKE" else 1 - p.fake_probability
        assert p.confidence == pytest.approx(expected)
    assert clf.predict(np.zeros((0, 64), np.float32)) == []
    with pytest.raises(ValueError, match=r"\[N, 64\]"):
        clf.predict(np.zeros((2, 32), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full((1, 64), np.nan, np.float32))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_sigmoid_head_threshold(make_bundle: BundleFactory) -> None:
    head = {"0.weight": torch.zeros(1, 64), "0.bias": torch.tensor([_logit(0.8)])}
    emb = np.ones((2, 64), np.float32)
    clf = _loaded(ClassifierModel, make_bundle(head_state=head))
    p = clf.predict(emb)[0]
    assert (p.prediction, p.confidence, p.fake_probability) == (
        "FAKE",
        pytest.approx(0.8),
        pytest.approx(0.8),
    )
    strict = _loaded(ClassifierModel, make_bundle(head_state=head, threshold=0.9))
    p = strict.predict(emb)[0]
    assert (p.prediction, p.confidence) == ("REAL", pytest.approx(0.2))  # P(chosen label)


def test_softmax_head_follows_label_order(make_bundle: BundleFactory) -> None:
    head = {"0.weight": torch.zeros(2, 64), "0.bias": torch.tensor([0.0, math.log(4.0)])}
    emb = np.ones((1, 64), np.float64)
    clf = _loaded(ClassifierModel, make_bundle(head_state=head, num_outputs=2))
    assert clf.predict(emb)[0].fake_probability == pytest.approx(0.8)
    flipped = _loaded(
        ClassifierModel, make_bundle(head_state=head, num_outputs=2, labels=("FAKE", "REAL"))
    )
    p = flipped.predict(emb)[0]
    assert (p.prediction, p.fake_probability, p.confidence) == (
        "REAL",
        pytest.approx(0.2),
        pytest.approx(0.8),
    )


def test_head_with_other_key_names(make_bundle: BundleFactory) -> None:
    """A head saved as Sequential(Dropout, Linear) ("1.weight") loads into our Linear."""
    src = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(64, 1))
    clf = _loaded(ClassifierModel, make_bundle(head_state=src.state_dict()))
    assert len(clf.predict(np.ones((3, 64), np.float32))) == 3


def test_head_shape_mismatch_is_reported(make_bundle: BundleFactory) -> None:
    head = {"0.weight": torch.zeros(1, 32), "0.bias": torch.zeros(1)}
    with pytest.raises(ModelLoadError, match=r"0.weight: file \(1, 32\) vs model \(1, 64\)"):
        _loaded(ClassifierModel, make_bundle(head_state=head))


def test_demo_bundle_efficientnet_b0(model_cache: Path) -> None:
    """The default demo architecture end to end (the one place we pay for a real CNN; the
    session cache shares its ONNX export with test_model_runtime)."""
    settings = ModelSettings(source="demo", cache_dir=model_cache)
    fe, clf = FeatureExtractorModel(settings), ClassifierModel(settings)
    fe.load()
    clf.load()
    assert fe.info.demo and fe.info.name == "penguin12-demo-efficientnet_b0"
    assert fe.info.version == clf.info.version
    emb = fe.embed(_images(2))
    assert emb.shape == (2, 1280)
    assert len(clf.predict(emb)) == 2
