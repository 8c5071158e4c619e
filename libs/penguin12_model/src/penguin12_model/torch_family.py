"""The ``torch`` family: a registry backbone (torchvision, tiny, Penguin-12's own CNN) and an MLP head.

torch reads and strictly checks the weights (``weights_only``/safetensors); the backbone then runs
on ONNX Runtime when ``settings.runtime`` allows it and its output matches torch's at load (see
:data:`ORT_SELF_CHECK_TOLERANCE`), else on torch eager.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from .bundle import ResolvedBundle
from .config import BundleConfig
from .errors import ModelLoadError
from .family import ModelFamily, register_family
from .head import align_head_state_dict, build_head
from .onnx_runtime import (
    NormalizedBackbone,
    OnnxBackbone,
    load_onnx_backbone,
    onnxruntime_available,
)
from .registry import build_backbone, canonicalize_backbone_state_dict, get_spec
from .settings import ModelSettings
from .weights import load_state_dict, load_weights_strict

logger = logging.getLogger("penguin12.model")

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


class TorchEncoder:
    """A registry backbone with ``(x/255 - mean)/std`` folded in front."""

    def __init__(self, bundle: ResolvedBundle, settings: ModelSettings) -> None:
        self.settings = settings
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
        #: max relative difference ONNX Runtime vs torch measured by the load-time check.
        self.self_check_error: float | None = None
        self._onnx: OnnxBackbone | None = None
        if settings.runtime != "torch":
            self._onnx = self._load_onnxruntime(model, bundle)
        warmup = np.zeros((1, cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
        if self._onnx is not None:
            self.runtime = "onnxruntime"
            self.num_threads = self._onnx.num_threads
            self._onnx.run(warmup)
        else:
            self.runtime = "torch"
            self.num_threads = torch.get_num_threads()
            if settings.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self._model = model
            with torch.inference_mode():  # warm-up: first oneDNN call pays kernel setup
                self._forward(warmup)

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
        if self._onnx is not None:
            return self._onnx.run(images)
        with torch.inference_mode():
            out = self._forward(images)
        return np.ascontiguousarray(out.numpy(), dtype=np.float32)


class TorchHead:
    """The MLP head: sigmoid of one logit, or softmax over ``labels``."""

    def __init__(self, bundle: ResolvedBundle, settings: ModelSettings) -> None:
        self.config = bundle.config
        head = build_head(bundle.config)
        state_dict = align_head_state_dict(load_state_dict(bundle.head_path), head)
        load_weights_strict(head, state_dict, f"classifier head ({bundle.head_path})")
        self._head = head.eval().requires_grad_(False)

    def fake_probability(self, embeddings: np.ndarray) -> np.ndarray:
        cfg = self.config
        x = torch.from_numpy(np.array(embeddings, dtype=np.float32, copy=True))
        with torch.inference_mode():
            logits = self._head(x)
            if cfg.num_outputs == 1:
                p = torch.sigmoid(logits[:, 0])
            else:
                p = torch.softmax(logits, dim=1)[:, cfg.labels.index(cfg.positive_label)]
        return p.double().numpy()


def _validate(config: BundleConfig) -> None:
    spec = get_spec(config.architecture)
    if config.embedding_dim != spec.embedding_dim:
        raise ModelLoadError(
            f"config embedding_dim={config.embedding_dim} but {config.architecture} "
            f"produces {spec.embedding_dim}-d embeddings"
        )


def _load_encoder(bundle: ResolvedBundle, settings: ModelSettings) -> TorchEncoder:
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    return TorchEncoder(bundle, settings)


def _load_head(bundle: ResolvedBundle, settings: ModelSettings) -> TorchHead:
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    return TorchHead(bundle, settings)


TORCH_FAMILY = ModelFamily(
    name="torch",
    files=(),  # the settings' backbone_file and head_file (Penguin-12's names by default)
    validate=_validate,
    load_encoder=_load_encoder,
    load_head=_load_head,
)
register_family(TORCH_FAMILY)
