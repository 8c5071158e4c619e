"""Penguin12 model engine: bundle resolution, backbone registry and inference engines.

Shared by the feature_extractor (backbone) and classifier (head) services so that both
build the same network from the same bundle and report the same version.
"""

from .config import IMAGENET_MEAN, IMAGENET_STD, BundleConfig
from .engine import ClassifierModel, FeatureExtractorModel, ModelInfo, Prediction
from .errors import ModelLoadError
from .head import build_head, infer_head_layout
from .loading import (
    DEFAULT_BACKBONE_FILE,
    DEFAULT_CONFIG_FILE,
    DEFAULT_HEAD_FILE,
    ModelSettings,
    ResolvedBundle,
    bundle_version,
    generate_demo_bundle,
    load_bundle,
    load_state_dict,
    resolve_bundle_dir,
)
from .registry import (
    BackboneSpec,
    available_architectures,
    build_backbone,
    infer_architecture,
    register_backbone,
)

__all__ = [
    "DEFAULT_BACKBONE_FILE",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_HEAD_FILE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackboneSpec",
    "BundleConfig",
    "ClassifierModel",
    "FeatureExtractorModel",
    "ModelInfo",
    "ModelLoadError",
    "ModelSettings",
    "Prediction",
    "ResolvedBundle",
    "available_architectures",
    "build_backbone",
    "build_head",
    "bundle_version",
    "generate_demo_bundle",
    "infer_architecture",
    "infer_head_layout",
    "load_bundle",
    "load_state_dict",
    "register_backbone",
    "resolve_bundle_dir",
]
