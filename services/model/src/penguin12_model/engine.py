"""Inference engines used by the feature_extractor and classifier services (MLServer style:
construct cheaply, ``load()`` once at startup, then call ``embed``/``predict``)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pydantic
import torch
from pydantic import ConfigDict
from torch import nn

from .config import BundleConfig
from .head import align_head_state_dict, build_head
from .loading import (
    ModelSettings,
    ResolvedBundle,
    load_bundle,
    load_state_dict,
    load_weights_strict,
)
from .registry import build_backbone, canonicalize_backbone_state_dict

logger = logging.getLogger("penguin12.model")


class ModelInfo(pydantic.BaseModel):
    """Identifies the exact network behind a result (attached to events for provenance)."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    demo: bool
    architecture: str


class Prediction(pydantic.BaseModel):
    """One verdict. ``confidence`` is the probability of ``label``; with the default 0.5
    threshold it lies in [0.5, 1]. ``fake_probability`` is P(positive_label)."""

    model_config = ConfigDict(frozen=True)

    label: str
    confidence: float
    fake_probability: float


class _BundleModel:
    """Shared bundle resolution, so both services agree on config and version."""

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
    def info(self) -> ModelInfo:
        cfg = self.bundle.config
        return ModelInfo(
            name=cfg.name, version=self.bundle.version, demo=cfg.demo, architecture=cfg.architecture
        )

    def _resolve(self) -> ResolvedBundle:
        if self.settings.num_threads > 0:
            torch.set_num_threads(self.settings.num_threads)
        bundle = load_bundle(self.settings)
        if bundle.config.demo:
            logger.warning(
                "%s is serving DEMO bundle %s (random weights): predictions are meaningless",
                type(self).__name__,
                bundle.config.name,
            )
        return bundle

    def _require_ready(self) -> None:
        if not self.ready:
            raise RuntimeError(f"{type(self).__name__} is not loaded; call load() first")


class FeatureExtractorModel(_BundleModel):
    """Backbone: uint8 RGB images -> float32 embeddings."""

    _model: nn.Module
    _scale: torch.Tensor
    _shift: torch.Tensor

    def load(self) -> None:
        """Build the backbone and load its weights strictly (any mismatch raises)."""
        started = time.perf_counter()
        self.ready = False
        bundle = self._resolve()
        cfg = bundle.config
        model = build_backbone(cfg.architecture)
        state_dict = canonicalize_backbone_state_dict(
            load_state_dict(bundle.backbone_path), cfg.architecture
        )
        load_weights_strict(
            model, state_dict, f"backbone {cfg.architecture!r} ({bundle.backbone_path})"
        )
        model.eval().requires_grad_(False)
        if self.settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # (x/255 - mean)/std folded into one multiply-add.
        std = torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        self._model = model
        self._bundle = bundle
        with torch.inference_mode():  # warm-up: first oneDNN call pays kernel setup
            self._forward(np.zeros((1, cfg.input_size, cfg.input_size, 3), dtype=np.uint8))
        self.ready = True
        logger.info(
            "feature extractor ready: %s version=%s arch=%s threads=%d channels_last=%s (%.2fs)",
            cfg.name,
            bundle.version,
            cfg.architecture,
            torch.get_num_threads(),
            self.settings.channels_last,
            time.perf_counter() - started,
        )

    def _forward(self, images: np.ndarray) -> torch.Tensor:
        if not images.flags.writeable:  # e.g. np.frombuffer over a Kafka payload
            images = images.copy()
        # NHWC uint8 viewed as NCHW is already channels_last in memory; .float() keeps it.
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        x = x.mul_(self._scale).sub_(self._shift)
        x = x.contiguous(
            memory_format=torch.channels_last
            if self.settings.channels_last
            else torch.contiguous_format
        )
        return self._model(x)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` (S = config.input_size) -> float32 ``[N, embedding_dim]``."""
        self._require_ready()
        cfg = self.config
        size = cfg.input_size
        if not isinstance(images, np.ndarray):
            raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            hint = " (add a batch axis)" if images.ndim == 3 else ""
            raise ValueError(
                f"images must have shape [N, {size}, {size}, 3] (RGB, resized by the "
                f"preprocessor to input_size={size}); got {list(images.shape)}{hint}"
            )
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 in 0..255, got dtype {images.dtype}")
        if images.shape[0] == 0:
            return np.zeros((0, cfg.embedding_dim), dtype=np.float32)
        with torch.inference_mode():
            out = self._forward(images)
        return np.ascontiguousarray(out.numpy(), dtype=np.float32)


class ClassifierModel(_BundleModel):
    """Head: float32 embeddings -> REAL/FAKE verdicts."""

    _head: nn.Module

    def load(self) -> None:
        """Build the head and load its weights strictly (any mismatch raises)."""
        self.ready = False
        bundle = self._resolve()
        head = build_head(bundle.config)
        state_dict = align_head_state_dict(load_state_dict(bundle.head_path), head)
        load_weights_strict(head, state_dict, f"classifier head ({bundle.head_path})")
        self._head = head.eval().requires_grad_(False)
        self._bundle = bundle
        self.ready = True
        logger.info(
            "classifier ready: %s version=%s outputs=%d threshold=%.3f",
            bundle.config.name,
            bundle.version,
            bundle.config.num_outputs,
            bundle.config.threshold,
        )

    def positive_probability(self, embeddings: np.ndarray) -> np.ndarray:
        """P(positive_label) per row as float64 ``[N]`` (validated like :meth:`predict`)."""
        self._require_ready()
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
        x = torch.from_numpy(np.array(embeddings, dtype=np.float32, copy=True))
        with torch.inference_mode():
            logits = self._head(x)
            if cfg.num_outputs == 1:
                p = torch.sigmoid(logits[:, 0])
            else:
                p = torch.softmax(logits, dim=1)[:, cfg.labels.index(cfg.positive_label)]
        return p.double().numpy()

    def predict(self, embeddings: np.ndarray) -> list[Prediction]:
        """float ``[N, embedding_dim]`` -> one :class:`Prediction` per row."""
        self._require_ready()
        cfg = self.config
        probs = self.positive_probability(embeddings)
        out: list[Prediction] = []
        for p in probs.tolist():
            positive = p >= cfg.threshold
            out.append(
                Prediction(
                    label=cfg.positive_label if positive else cfg.negative_label,
                    confidence=p if positive else 1.0 - p,
                    fake_probability=p,
                )
            )
        return out
