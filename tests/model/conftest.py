"""Fixtures for the model engine tests: small bundles built on the fly with "tiny"."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from penguin12_model import BundleConfig, build_backbone, build_head

BundleFactory = Callable[..., Path]


def write_bundle(
    dest: Path,
    *,
    architecture: str = "tiny",
    embedding_dim: int = 64,
    head_state: dict[str, torch.Tensor] | None = None,
    with_config: bool = True,
    seed: int = 0,
    **config_fields: object,
) -> Path:
    """Write a (non-demo) bundle: backbone/head state dicts via torch.save + config.json."""
    dest.mkdir(parents=True, exist_ok=True)
    config = BundleConfig.model_validate(
        {"architecture": architecture, "embedding_dim": embedding_dim, **config_fields}
    )
    torch.manual_seed(seed)
    torch.save(build_backbone(architecture).state_dict(), dest / "backbone_weights.pt")
    torch.save(head_state or build_head(config).state_dict(), dest / "classifier_head.pt")
    if with_config:
        (dest / "config.json").write_text(json.dumps(config.model_dump(mode="json")))
    return dest


@pytest.fixture(scope="session", autouse=True)
def _single_thread() -> Iterator[None]:
    """One intra-op thread (torch, and so ONNX Runtime): on a busy 2-core box two OpenMP
    threads that wait on each other at every op barrier are several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache (demo bundles, ONNX exports) for the whole session: exports are keyed
    by bundle version, so tests loading the same weights reuse them instead of re-exporting."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def _model_env(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write to the working tree's .cache; ignore PENGUIN12_MODEL_* of the caller."""
    import os

    for name in list(os.environ):
        if name.startswith("PENGUIN12_MODEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PENGUIN12_MODEL_CACHE_DIR", str(model_cache))


@pytest.fixture
def make_bundle(tmp_path: Path) -> BundleFactory:
    counter = iter(range(1000))

    def factory(**kwargs: object) -> Path:
        return write_bundle(tmp_path / f"bundle{next(counter)}", **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def isolated_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, offline Hugging Face cache so no test ever touches the network."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home / "hub"
