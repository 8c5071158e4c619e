"""Penguin-12 as its Hub repository really holds it: no config.json, ``backbone_weights.pt`` (the
``features`` sequence), ``classifier_weights.pt`` (keys 1.* and 4.*) and ``mean_std.json``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from penguin12.imaging import Preprocessing, prepare_image
from penguin12_model import (
    ClassifierModel,
    FeatureExtractorModel,
    ModelLoadError,
    ModelSettings,
    build_backbone,
)

from .test_model_hub import populate_hf_cache

MEAN, STD = [0.52, 0.43, 0.39], [0.24, 0.22, 0.23]


def penguin12_head() -> nn.Sequential:
    """The head exactly as the issue describes Penguin-12's: its state dict keys are 1.* and 4.*."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(1024, 256), nn.SiLU(), nn.Dropout(0.5), nn.Linear(256, 1)
    )


def write_penguin12_repo(dest: Path, *, mean_std: bool = True, seed: int = 7) -> Path:
    dest.mkdir(parents=True)
    torch.manual_seed(seed)
    backbone = build_backbone("penguin12")
    # Non-trivial BatchNorm statistics, so a wrong key mapping cannot pass unnoticed.
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save(backbone.state_dict(), dest / "backbone_weights.pt")
    torch.save(penguin12_head().state_dict(), dest / "classifier_weights.pt")
    if mean_std:
        (dest / "mean_std.json").write_text(json.dumps({"mean": MEAN, "std": STD}))
    return dest


def reference_probability(repo: Path, image: bytes) -> float:
    """Penguin-12's inference written out independently: LANCZOS squash to 128, /255, mean/std."""
    backbone = build_backbone("penguin12")
    backbone.load_state_dict(torch.load(repo / "backbone_weights.pt", weights_only=True))
    head = penguin12_head()
    head.load_state_dict(torch.load(repo / "classifier_weights.pt", weights_only=True))
    rgb = Image.open(io.BytesIO(image)).convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        features = backbone.eval()(x)
        return float(torch.sigmoid(head.eval()(features))[0, 0])


def test_state_dict_keys_are_penguin12s() -> None:
    keys = set(build_backbone("penguin12").state_dict())
    assert {"0.0.weight", "0.1.running_mean", "1.6.fc.0.weight", "4.6.fc.2.bias"} <= keys
    assert not any(k.startswith("0.6.fc") for k in keys)  # no SE unit in the first block
    assert set(penguin12_head().state_dict()) == {"1.weight", "1.bias", "4.weight", "4.bias"}


def _load(settings: ModelSettings) -> tuple[FeatureExtractorModel, ClassifierModel]:
    fe, cl = FeatureExtractorModel(settings), ClassifierModel(settings)
    fe.load()
    cl.load()
    return fe, cl


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_local_layout_loads_strictly_and_matches_the_reference(
    tmp_path: Path, photos: dict[str, bytes], runtime: str
) -> None:
    repo = write_penguin12_repo(tmp_path / "Penguin-12")
    fe, cl = _load(ModelSettings(source="local", dir=repo, runtime=runtime))  # type: ignore[arg-type]
    cfg = fe.config
    assert (cfg.architecture, cfg.input_size, cfg.head_activation) == ("penguin12", 128, "silu")
    assert fe.preprocessing == Preprocessing(resize="squash", interpolation="lanczos", size=128)
    assert (list(cfg.mean), list(cfg.std)) == (MEAN, STD)
    assert fe.info.version == cl.info.version and not fe.info.demo
    for name in ("astronaut.jpg", "rocket.jpg"):
        pixels = prepare_image(photos[name], preprocessing=fe.preprocessing, max_pixels=10**8)
        [prediction] = cl.predict(fe.embed(pixels.pixels[None]))
        assert prediction.fake_probability == pytest.approx(
            reference_probability(repo, photos[name]), abs=1e-5
        )


def test_hub_cache_layout_loads(tmp_path: Path, isolated_hf: Path) -> None:
    repo = write_penguin12_repo(tmp_path / "src")
    snapshot = populate_hf_cache(
        isolated_hf, {p.name: p for p in repo.iterdir()}, repo="nguyenpn/Penguin-12"
    )
    fe, cl = _load(ModelSettings(source="hub", runtime="torch"))
    assert fe.bundle.directory == snapshot
    assert fe.bundle.head_path.name == "classifier_weights.pt"
    assert fe.config.architecture == "penguin12" and cl.config.head_hidden_dims == (256,)


def test_without_mean_std_it_refuses_and_says_why(tmp_path: Path) -> None:
    repo = write_penguin12_repo(tmp_path / "Penguin-12", mean_std=False)
    with pytest.raises(ModelLoadError, match=r"no mean_std\.json.*confident nonsense"):
        FeatureExtractorModel(ModelSettings(source="local", dir=repo)).load()


def test_a_wrong_key_fails_the_strict_load(tmp_path: Path) -> None:
    repo = write_penguin12_repo(tmp_path / "Penguin-12")
    sd = torch.load(repo / "backbone_weights.pt", weights_only=True)
    sd["1.6.fc.0.weight"] = sd["1.6.fc.0.weight"][:, :-1]
    torch.save(sd, repo / "backbone_weights.pt")
    with pytest.raises(ModelLoadError):
        FeatureExtractorModel(ModelSettings(source="local", dir=repo, runtime="torch")).load()


def test_auto_falls_back_to_embedded_when_the_hub_bundle_does_not_load(
    tmp_path: Path, isolated_hf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Downloads but cannot be served (no mean_std.json): auto says so and serves the embedded one."""
    repo = write_penguin12_repo(tmp_path / "src", mean_std=False)
    populate_hf_cache(isolated_hf, {p.name: p for p in repo.iterdir()})
    cache = Path(__file__).resolve().parents[2] / ".cache" / "penguin12" / "models"
    cl = ClassifierModel(ModelSettings(source="auto", cache_dir=cache))
    cl.load()
    assert cl.info.family == "onnx_probe" and not cl.info.demo
    assert "model source hub failed" in caplog.text and "mean_std.json" in caplog.text
