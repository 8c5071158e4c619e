"""Inference engines used by the feature_extractor and classifier services (MLServer style:
construct cheaply, ``load()`` once at startup, then call ``embed``/``predict``)."""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np
import pydantic
import torch
from pydantic import ConfigDict
from torch import nn

from .config import BundleConfig
from .errors import ModelLoadError
from .head import align_head_state_dict, build_head
from .loading import (
    ModelSettings,
    ResolvedBundle,
    load_bundle,
    load_state_dict,
    load_weights_strict,
)
from .onnx_runtime import (
    NormalizedBackbone,
    OnnxBackbone,
    load_onnx_backbone,
    onnxruntime_available,
)
from .registry import build_backbone, canonicalize_backbone_state_dict

logger = logging.getLogger("penguin12.model")

Runtime = Literal["torch", "onnxruntime"]

#: ONNX Runtime is used only if, on a fixed random batch at load, its embeddings differ from
#: torch eager's by at most this fraction of the largest torch output (max |ort - torch| /
#: max |torch|). Measured: ~1e-6 (tiny and efficientnet_b0, random weights; see
#: docs/model-performance.md), so 1e-4 leaves room for other CPUs without hiding real bugs
#: (a wrong normalisation or layout gives errors of order 1).
ORT_SELF_CHECK_TOLERANCE = 1e-4
_SELF_CHECK_BATCH = 2
_SELF_CHECK_SEED = 20240611


def relative_max_error(got: np.ndarray, reference: np.ndarray) -> float:
    """max |got - reference| / max |reference| (the absolute error if the reference is all 0)."""
    if got.shape != reference.shape:
        return float("inf")
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    if diff.size == 0:
        return 0.0
    if not np.isfinite(diff).all():
        return float("inf")
    scale = float(np.abs(reference).max())
    worst = float(diff.max())
    return worst / scale if scale > 0 else worst


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
    """Backbone: uint8 RGB images -> float32 embeddings.

    torch reads and checks the weights; inference then runs on ONNX Runtime when
    ``settings.runtime`` allows it and its output matches torch's at load (see
    :data:`ORT_SELF_CHECK_TOLERANCE`), else on torch eager.
    """

    _model: nn.Module
    _scale: torch.Tensor
    _shift: torch.Tensor

    def __init__(self, settings: ModelSettings | None = None) -> None:
        super().__init__(settings)
        self._onnx: OnnxBackbone | None = None
        self._runtime: Runtime | None = None
        #: max relative difference ONNX Runtime vs torch measured by the load-time check.
        self.self_check_error: float | None = None

    @property
    def runtime(self) -> Runtime:
        """The runtime actually serving ``embed``: ``"onnxruntime"`` or ``"torch"``."""
        if self._runtime is None:
            raise RuntimeError(f"{type(self).__name__} is not loaded; call load() first")
        return self._runtime

    def load(self) -> None:
        """Build the backbone, load its weights strictly (any mismatch raises), pick a runtime."""
        started = time.perf_counter()
        self.ready = False
        self._onnx, self._runtime, self.self_check_error = None, None, None
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
        # (x/255 - mean)/std folded into one multiply-add.
        std = torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        self._bundle = bundle

        if self.settings.runtime != "torch":
            self._onnx = self._load_onnxruntime(model, bundle)
        if self._onnx is not None:
            self._runtime = "onnxruntime"
            self._onnx.run(np.zeros((1, cfg.input_size, cfg.input_size, 3), dtype=np.uint8))
        else:
            self._runtime = "torch"
            if self.settings.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self._model = model
            with torch.inference_mode():  # warm-up: first oneDNN call pays kernel setup
                self._forward(np.zeros((1, cfg.input_size, cfg.input_size, 3), dtype=np.uint8))
        self.ready = True
        logger.info(
            "feature extractor ready: %s version=%s arch=%s runtime=%s threads=%d%s (%.2fs)",
            cfg.name,
            bundle.version,
            cfg.architecture,
            self._runtime,
            self._onnx.num_threads if self._onnx is not None else torch.get_num_threads(),
            f" channels_last={self.settings.channels_last}" if self._onnx is None else "",
            time.perf_counter() - started,
        )

    def _threads(self) -> int:
        return self.settings.num_threads or torch.get_num_threads()

    def _load_onnxruntime(self, model: nn.Module, bundle: ResolvedBundle) -> OnnxBackbone | None:
        """Export (or reuse) and check the ONNX backbone; None means "use torch" (auto only)."""
        explicit = self.settings.runtime == "onnxruntime"
        if not onnxruntime_available():
            if explicit:
                raise ModelLoadError(
                    "runtime=onnxruntime but onnxruntime/onnx are not installed "
                    "(pip install onnxruntime onnx), or set PENGUIN12_MODEL_RUNTIME=torch"
                )
            logger.warning("onnxruntime is not installed: running the backbone on torch eager")
            return None
        module = NormalizedBackbone(model, self._scale, self._shift).eval()
        try:
            onnx, exported = load_onnx_backbone(
                module, bundle, self.settings.cache_dir, self._threads()
            )
            size = bundle.config.input_size
            images = np.random.default_rng(_SELF_CHECK_SEED).integers(
                0, 256, (_SELF_CHECK_BATCH, size, size, 3), dtype=np.uint8
            )
            with torch.inference_mode():
                reference = module(torch.from_numpy(images)).numpy()
            error = relative_max_error(onnx.run(images), reference)
        except Exception as exc:
            if explicit:
                raise ModelLoadError(f"runtime=onnxruntime could not be set up: {exc}") from exc
            logger.warning(
                "ONNX Runtime unavailable for %s (%s: %s): running the backbone on torch eager",
                bundle.config.architecture,
                type(exc).__name__,
                exc,
            )
            return None
        self.self_check_error = error
        if error > ORT_SELF_CHECK_TOLERANCE:
            message = (
                f"ONNX Runtime embeddings differ from torch by {error:.3g} of the output scale "
                f"(tolerance {ORT_SELF_CHECK_TOLERANCE:g}) for {bundle.config.architecture} "
                f"version {bundle.version}"
            )
            if explicit:
                raise ModelLoadError(message)
            logger.warning("%s: running the backbone on torch eager instead", message)
            return None
        logger.info(
            "ONNX Runtime backbone %s (self-check vs torch: max relative error %.2g)",
            "exported" if exported else "loaded from cache",
            error,
        )
        return onnx

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
        if self._onnx is not None:
            return self._onnx.run(images)
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
