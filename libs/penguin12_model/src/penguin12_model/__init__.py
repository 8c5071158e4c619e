"""Penguin12 model engine: bundle resolution, backbone registry and inference engines.

Shared by the feature_extractor (backbone) and classifier (head) services so that both
build the same network from the same bundle and report the same version.
"""

from .config import IMAGENET_MEAN, IMAGENET_STD, BundleConfig
from .engine import (
    Assessment,
    ClassifierModel,
    FeatureExtractorModel,
    ModelInfo,
    Prediction,
    verdict,
)
from .errors import ModelLoadError
from .family import Encoder, Head, ModelFamily, get_family, register_family
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
    select_bundle,
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
    "Assessment",
    "BackboneSpec",
    "BundleConfig",
    "ClassifierModel",
    "Encoder",
    "FeatureExtractorModel",
    "Head",
    "ModelFamily",
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
    "get_family",
    "infer_architecture",
    "infer_head_layout",
    "load_bundle",
    "load_state_dict",
    "register_backbone",
    "register_family",
    "resolve_bundle_dir",
    "select_bundle",
    "verdict",
]
