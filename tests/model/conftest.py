"""Fixtures for the model engine tests: small bundles built on the fly with "tiny"."""

from __future__ import annotations

import json
from collections.abc import Callable
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
