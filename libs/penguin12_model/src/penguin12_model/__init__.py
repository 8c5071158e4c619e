"""Penguin12 model engine: bundle resolution, backbone registry and inference engines.

Shared by the feature_extractor (backbone) and classifier (head) services so that both
build the same network from the same bundle and report the same version. What a result says
about the model that made it is the wire's own ``penguin12.schemas.ModelInfo`` (``model.info``).
"""

from .bundle import ResolvedBundle, bundle_version, load_bundle, select_bundle
from .config import IMAGENET_MEAN, IMAGENET_STD, BundleConfig
from .demo import generate_demo_bundle
from .engine import (
    Assessment,
    ClassifierModel,
    FeatureExtractorModel,
    Prediction,
    verdict,
)
from .errors import ModelLoadError
from .family import Encoder, Head, ModelFamily, get_family, register_family
from .head import build_head, infer_head_layout
from .registry import (
    BackboneSpec,
    available_architectures,
    build_backbone,
    infer_architecture,
    register_backbone,
)
from .settings import DEFAULT_BACKBONE_FILE, DEFAULT_CONFIG_FILE, DEFAULT_HEAD_FILE, ModelSettings
from .sources import resolve_bundle_dir
from .weights import load_state_dict

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
