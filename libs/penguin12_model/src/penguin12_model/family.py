"""Model families: how a bundle's files become an encoder (feature extractor) and a head (classifier).

The services only see :class:`~penguin12_model.engine.FeatureExtractorModel` and
:class:`~penguin12_model.engine.ClassifierModel`; those look the bundle's ``family`` up here. A new
family is one module that calls :func:`register_family`, with no edit to any service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import ModelLoadError

if TYPE_CHECKING:
    from .bundle import ResolvedBundle
    from .config import BundleConfig
    from .settings import ModelSettings


class Encoder(Protocol):
    """uint8 RGB ``[N, S, S, 3]`` (already prepared as the config says) -> float32 embeddings."""

    runtime: str

    def embed(self, images: np.ndarray) -> np.ndarray: ...


class Head(Protocol):
    """float32 embeddings ``[N, embedding_dim]`` -> the (calibrated) P(FAKE, the positive label), float64."""

    def fake_probability(self, embeddings: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelFamily:
    """One way of building a detector from a bundle.

    ``files`` names the files that make up the model (they enter the bundle version, so both
    services agree on exactly which bytes they serve); empty means the settings' backbone and head
    files (the torch family's). ``validate`` checks a config before anything heavy is loaded.
    """

    name: str
    files: tuple[str, ...]
    validate: Callable[[BundleConfig], None]
    load_encoder: Callable[[ResolvedBundle, ModelSettings], Encoder]
    load_head: Callable[[ResolvedBundle, ModelSettings], Head]


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> None:
    _FAMILIES[family.name] = family


def get_family(name: str) -> ModelFamily:
    # Importing the package registers the built-in families (torch, onnx_probe).
    from . import onnx_probe, torch_family  # noqa: F401

    try:
        return _FAMILIES[name]
    except KeyError:
        raise ModelLoadError(
            f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}"
        ) from None
