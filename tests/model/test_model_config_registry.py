"""BundleConfig validation, the backbone registry and architecture inference."""

from __future__ import annotations

import pydantic
import pytest
import torch
import torchvision

from penguin12_model import (
    BundleConfig,
    ModelLoadError,
    available_architectures,
    build_backbone,
    build_head,
    infer_architecture,
    infer_head_layout,
)


def test_config_defaults_and_validation() -> None:
    cfg = BundleConfig(architecture="tiny", embedding_dim=64)
    assert cfg.input_size == 224 and cfg.labels == ("REAL", "FAKE")
    assert cfg.positive_label == "FAKE" and cfg.negative_label == "REAL"
    assert cfg.mean == (0.485, 0.456, 0.406) and not cfg.demo
    with pytest.raises(pydantic.ValidationError):
        BundleConfig(architecture="tiny", embedding_dim=64, positive_label="SPOOF")
    with pytest.raises(pydantic.ValidationError):
        BundleConfig(architecture="tiny", embedding_dim=64, num_outputs=3)
    with pytest.raises(pydantic.ValidationError):  # typos are not silently ignored
        BundleConfig.model_validate({"architecture": "tiny", "embedding_dim": 64, "treshold": 1})


def test_canonical_json_is_order_independent() -> None:
    a = BundleConfig(architecture="tiny", embedding_dim=64, threshold=0.4)
    b = BundleConfig.model_validate_json(
        '{"threshold": 0.4, "embedding_dim": 64, "architecture": "tiny"}'
    )
    assert a.canonical_json() == b.canonical_json()


def test_registry_contents() -> None:
    names = available_architectures()
    for required in ("tiny", "efficientnet_b0", "resnet18", "resnet50"):
        assert required in names
    with pytest.raises(ModelLoadError, match="unknown backbone"):
        build_backbone("vit_h14")


def test_tiny_backbone_embedding() -> None:
    out = build_backbone("tiny").eval()(torch.zeros(2, 3, 224, 224))
    assert out.shape == (2, 64)


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (torchvision.models.efficientnet_b0, "efficientnet_b0"),
        (torchvision.models.resnet50, "resnet50"),
    ],
)
def test_infer_architecture_torchvision(factory, expected: str) -> None:
    full = factory(weights=None).state_dict()  # still has the classifier / fc keys
    assert infer_architecture(full) == expected
    wrapped = {f"module.backbone.{k}": v for k, v in full.items()}
    assert infer_architecture(wrapped) == expected
    stripped = build_backbone(expected).state_dict()  # what a bundle normally holds
    assert infer_architecture(stripped) == expected


def test_infer_architecture_sequential_export() -> None:
    """``nn.Sequential(*list(resnet.children())[:-1])`` is a common way to drop fc."""
    resnet = torchvision.models.resnet18(weights=None)
    seq = torch.nn.Sequential(*list(resnet.children())[:-1])
    assert infer_architecture(seq.state_dict()) == "resnet18"


def test_infer_architecture_tiny_and_unknown() -> None:
    assert infer_architecture(build_backbone("tiny").state_dict()) == "tiny"
    with pytest.raises(ModelLoadError, match="could not match"):
        infer_architecture({"foo.weight": torch.zeros(3, 3)})


def test_build_head_and_infer_layout() -> None:
    cfg = BundleConfig(
        architecture="tiny", embedding_dim=64, head_hidden_dims=(32, 16), num_outputs=2
    )
    head = build_head(cfg)
    assert head(torch.zeros(5, 64)).shape == (5, 2)
    assert infer_head_layout(head.state_dict()) == (64, (32, 16), 2)
    other = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Linear(1280, 1))
    assert infer_head_layout({f"head.{k}": v for k, v in other.state_dict().items()}) == (
        1280,
        (),
        1,
    )
