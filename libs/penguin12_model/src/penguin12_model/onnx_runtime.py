"""ONNX Runtime execution of the backbone (the default when it matches torch; see engine.py).

torch stays the reference: it reads the bundle's weights (strictly, ``weights_only``), and the
ONNX graph is exported from that loaded module. The exported graph takes the same input as
:meth:`FeatureExtractorModel.embed` -- uint8 ``[N, S, S, 3]`` RGB -- and does the
``(x / 255 - mean) / std`` normalisation itself, so serving is one ``session.run``.

The export (seconds for efficientnet_b0) happens once per bundle version: the file is cached
under ``<cache_dir>/onnx/`` with a name that includes the version (a hash of the config, so of
mean/std/input_size, and of the weight bytes) and :data:`EXPORT_REVISION`, which is bumped
whenever the exported graph changes.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .config import BundleConfig
from .errors import ModelLoadError

if TYPE_CHECKING:
    from .bundle import ResolvedBundle

logger = logging.getLogger("penguin12.model")

#: Bump when the exported graph changes (wrapper, opset, exporter options): old files are ignored.
EXPORT_REVISION = 1
OPSET_VERSION = 17
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` and the ``onnx`` package the torch exporter needs import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class NormalizedBackbone(nn.Module):
    """uint8 NHWC images -> embeddings: the exact computation of the torch path, as one module."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, backbone: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        return self.backbone(x * self.scale - self.shift)


def onnx_cache_path(cache_dir: Path, bundle: ResolvedBundle) -> Path:
    """Where the exported graph of ``bundle`` is cached (one file per bundle version)."""
    cfg = bundle.config
    name = f"{cfg.architecture}-{bundle.version}-r{EXPORT_REVISION}-opset{OPSET_VERSION}.onnx"
    return Path(cache_dir) / "onnx" / name


def export_onnx(module: NormalizedBackbone, config: BundleConfig) -> bytes:
    """Export with the TorchScript-based exporter (no onnxscript needed); batch axis dynamic."""
    size = config.input_size
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter announces its deprecation on every call; tracing warnings about
        # Python-side shape logic do not apply to these convnets (the batch axis is dynamic).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(
                module.eval(),
                (example,),
                buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET_VERSION,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:
            raise ModelLoadError(
                f"ONNX export of backbone {config.architecture!r} failed: {exc}"
            ) from exc
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)  # concurrent replicas exporting the same bundle: last one wins
    finally:
        tmp.unlink(missing_ok=True)


def session_options(num_threads: int) -> Any:
    """Sequential execution, full graph optimisation, ``num_threads`` intra-op threads that
    sleep rather than spin between ops.

    A service shares its cores with the others: a spinning thread burns the CPU they need. In the
    saturated pipeline (issue #14, one feature extractor, 2 threads) spinning cost 34.9 CPU-ms per
    image against 31.2 without it, and bought only 2.6 % more images per second.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = max(1, num_threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OnnxBackbone:
    """An ONNX Runtime session over the exported backbone (CPU execution provider)."""

    def __init__(self, model: bytes | Path, num_threads: int) -> None:
        import onnxruntime as ort

        source: bytes | str = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(
            source, sess_options=session_options(num_threads), providers=["CPUExecutionProvider"]
        )
        self.num_threads = max(1, num_threads)

    def run(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` -> float32 ``[N, D]``."""
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images)})[0]
        return np.ascontiguousarray(out, dtype=np.float32)


def load_onnx_backbone(
    module: NormalizedBackbone, bundle: ResolvedBundle, cache_dir: Path, num_threads: int
) -> tuple[OnnxBackbone, bool]:
    """Open the cached export of ``bundle`` or export it now; returns (backbone, exported).

    A cached file that ONNX Runtime cannot open is replaced by a fresh export. When the cache
    directory is not writable the export is used from memory (and redone at the next start).
    """
    path = onnx_cache_path(cache_dir, bundle)
    if path.is_file():
        try:
            backbone = OnnxBackbone(path, num_threads)
            logger.info("using cached ONNX export %s", path)
            return backbone, False
        except Exception as exc:
            logger.warning("cached ONNX export %s is unusable (%s); exporting again", path, exc)
    data = export_onnx(module, bundle.config)
    try:
        _write_atomic(path, data)
        logger.info("exported backbone to ONNX: %s (%.1f MB)", path, len(data) / 1e6)
    except OSError as exc:
        logger.warning("cannot cache the ONNX export at %s (%s); using it from memory", path, exc)
        return OnnxBackbone(data, num_threads), True
    return OnnxBackbone(path, num_threads), True
