"""The two model interfaces the services use: :class:`FeatureExtractorModel` (bundle -> encoder) and
:class:`ClassifierModel` (bundle -> head -> verdict). MLServer style: construct cheaply, ``load()``
once at startup, then ``embed``/``predict``. Which family serves the bundle (torch, onnx_probe, ...)
is the bundle's business (:mod:`penguin12_model.family`); nothing here or in a service depends on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Literal, TypeVar

import numpy as np
import pydantic
from pydantic import ConfigDict

from penguin12.imaging import Preprocessing
from penguin12.schemas import ModelInfo

from .bundle import ResolvedBundle, load_bundle
from .config import BundleConfig
from .family import Encoder, Head, ModelFamily, get_family
from .settings import ModelSettings
from .sources import first_that_loads, source_order

logger = logging.getLogger("penguin12.model")

Assessment = Literal["likely_real", "inconclusive", "likely_fake"]
Built = TypeVar("Built", Encoder, Head)


class Prediction(pydantic.BaseModel):
    """One verdict. ``prediction`` is REAL or FAKE (the config's labels); ``confidence`` is its
    probability, with the default 0.5 threshold in [0.5, 1]. ``fake_probability`` is the
    calibrated P(positive_label); ``assessment`` the abstain-band reading of it."""

    model_config = ConfigDict(frozen=True)

    prediction: str
    confidence: float
    fake_probability: float
    assessment: Assessment


def verdict(p: float, config: BundleConfig) -> Prediction:
    """The whole verdict policy for one calibrated probability ``p`` = P(positive label).

    ``prediction``/``confidence`` use the single ``threshold`` (the seed's REAL/FAKE);
    ``assessment`` uses the abstain band when the model declares one (p <= T_lo likely_real,
    p >= T_hi likely_fake, in between inconclusive: the boundaries as the sahu65 reference code
    draws them), else the threshold. Kept in one place so that evidence from outside the pixels
    (e.g. a declared AI origin in the file's metadata) can be layered on top without touching the
    models.
    """
    positive = p >= config.threshold
    assessment: Assessment
    if config.abstain_band is not None:
        t_lo, t_hi = config.abstain_band
        assessment = "likely_real" if p <= t_lo else "likely_fake" if p >= t_hi else "inconclusive"
    else:
        assessment = "likely_fake" if positive else "likely_real"
    return Prediction(
        prediction=config.positive_label if positive else config.negative_label,
        confidence=p if positive else 1.0 - p,
        fake_probability=p,
        assessment=assessment,
    )


class _BundleModel(Generic[Built]):
    """Bundle resolution, the auto-mode fallback and ``load()``, shared so both services agree on
    the model; a subclass says which half of the family it builds (:meth:`_build`)."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.ready: bool = False
        self._bundle: ResolvedBundle | None = None
        self._built: Built | None = None

    @property
    def bundle(self) -> ResolvedBundle:
        if self._bundle is None:
            raise RuntimeError(f"{type(self).__name__} is not loaded; call load() first")
        return self._bundle

    @property
    def config(self) -> BundleConfig:
        return self.bundle.config

    @property
    def preprocessing(self) -> Preprocessing:
        """The pixels this model expects (what the preprocessor must prepare)."""
        return self.bundle.config.preprocessing

    @property
    def info(self) -> ModelInfo:
        """The wire's identity of the network behind every result (the events carry it)."""
        cfg = self.bundle.config
        return ModelInfo(
            name=cfg.name,
            version=self.bundle.version,
            demo=cfg.demo,
            architecture=cfg.architecture,
            family=cfg.family,
            license=cfg.license,
            origin=cfg.origin,
            caveat=cfg.caveat,
        )

    def _build(self, family: ModelFamily, bundle: ResolvedBundle) -> Built:
        raise NotImplementedError

    def _ready_line(self, built: Built) -> str:
        raise NotImplementedError

    def load(self) -> None:
        """Resolve the bundle and load this half strictly (any mismatch raises).

        The first source that both resolves *and* loads wins: in auto mode a Hub bundle that
        downloads but does not load (wrong layout, missing mean_std.json, ...) is logged loudly and
        the next source (the embedded detector) is used.
        """
        started = time.perf_counter()
        self.ready = False
        self._built = None

        def attempt(source: str, resolve: Callable[[], Path]) -> tuple[ResolvedBundle, Built]:
            bundle = load_bundle(self.settings, resolve(), source)
            return bundle, self._build(get_family(bundle.config.family), bundle)

        bundle, built = first_that_loads(source_order(self.settings), attempt)
        if bundle.config.demo:
            logger.warning(
                "%s is serving DEMO bundle %s (random weights): predictions are meaningless",
                type(self).__name__,
                bundle.config.name,
            )
        self._bundle, self._built = bundle, built
        self.ready = True
        logger.info(
            "%s ready from source %s: %s version=%s family=%s (%s) %s (%.2fs)",
            type(self).__name__,
            bundle.source,
            bundle.config.name,
            bundle.version,
            bundle.config.family,
            bundle.directory,
            self._ready_line(built),
            time.perf_counter() - started,
        )

    def _loaded(self) -> Built:
        if not self.ready or self._built is None:
            raise RuntimeError(f"{type(self).__name__} is not loaded; call load() first")
        return self._built


class FeatureExtractorModel(_BundleModel[Encoder]):
    """Encoder: uint8 RGB images, prepared as :attr:`preprocessing` says -> float32 embeddings."""

    @property
    def runtime(self) -> str:
        """The runtime actually serving ``embed``: ``"onnxruntime"`` or ``"torch"``."""
        return self._loaded().runtime

    @property
    def self_check_error(self) -> float | None:
        """torch family: max relative difference ONNX Runtime vs torch measured at load."""
        return getattr(self._built, "self_check_error", None)

    def _build(self, family: ModelFamily, bundle: ResolvedBundle) -> Encoder:
        return family.load_encoder(bundle, self.settings)

    def _ready_line(self, built: Encoder) -> str:
        threads = getattr(built, "num_threads", "?")
        cfg = self.config
        return (
            f"arch={cfg.architecture} runtime={built.runtime} threads={threads} "
            f"preprocessing={cfg.preprocessing.key}"
        )

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` (S = config.input_size) -> float32 ``[N, embedding_dim]``."""
        encoder = self._loaded()
        cfg = self.config
        size = cfg.input_size
        if not isinstance(images, np.ndarray):
            raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            hint = " (add a batch axis)" if images.ndim == 3 else ""
            raise ValueError(
                f"images must have shape [N, {size}, {size}, 3] (RGB, prepared by the "
                f"preprocessor as {cfg.preprocessing.key}, input_size={size}); got {list(images.shape)}{hint}"
            )
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 in 0..255, got dtype {images.dtype}")
        if images.shape[0] == 0:
            return np.zeros((0, cfg.embedding_dim), dtype=np.float32)
        return encoder.embed(images)


class ClassifierModel(_BundleModel[Head]):
    """Head: float32 embeddings -> calibrated probability -> :func:`verdict`."""

    def _build(self, family: ModelFamily, bundle: ResolvedBundle) -> Head:
        return family.load_head(bundle, self.settings)

    def _ready_line(self, built: Head) -> str:
        cfg = self.config
        return f"threshold={cfg.threshold:.3f} band={cfg.abstain_band}"

    def fake_probability(self, embeddings: np.ndarray) -> np.ndarray:
        """Calibrated P(positive_label) per row as float64 ``[N]`` (validated like predict)."""
        head = self._loaded()
        cfg = self.config
        if not isinstance(embeddings, np.ndarray):
            raise ValueError(f"embeddings must be a numpy array, got {type(embeddings).__name__}")
        if embeddings.ndim != 2 or embeddings.shape[1] != cfg.embedding_dim:
            raise ValueError(
                f"embeddings must have shape [N, {cfg.embedding_dim}]; got {list(embeddings.shape)}"
            )
        if not np.issubdtype(embeddings.dtype, np.floating):
            raise ValueError(f"embeddings must be floating point, got dtype {embeddings.dtype}")
        if embeddings.shape[0] == 0:
            return np.zeros((0,), dtype=np.float64)
        if not np.isfinite(embeddings).all():
            raise ValueError("embeddings contain NaN or infinite values")
        return np.asarray(head.fake_probability(embeddings), dtype=np.float64)

    def predict(self, embeddings: np.ndarray) -> list[Prediction]:
        """float ``[N, embedding_dim]`` -> one :class:`Prediction` per row."""
        probs = self.fake_probability(embeddings)
        return [verdict(p, self.config) for p in probs.tolist()]
