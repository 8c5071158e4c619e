"""Penguin-12's own Hub layout: no config.json, a fixed design, and its training set's mean/std.

A bundle whose backbone is recognised as Penguin-12's CNN is configured from what its design fixes
plus ``mean_std.json`` from the same release; without that file it is refused rather than served
with guessed statistics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .config import BundleConfig
from .errors import ModelLoadError

logger = logging.getLogger("penguin12.model")

#: Penguin-12's training-set statistics: {"mean": [3 floats], "std": [3 floats]}.
MEAN_STD_FILE = "mean_std.json"
PENGUIN12_ARCHITECTURE = "penguin12"


def _read_mean_std(path: Path) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        mean = tuple(float(v) for v in raw["mean"])
        std = tuple(float(v) for v in raw["std"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if len(mean) != 3 or len(std) != 3 or any(v <= 0 for v in std):
        raise ModelLoadError(f"{path} must hold 3 means and 3 positive stds, got {raw}")
    return (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])


def penguin12_config(root: Path, hidden: tuple[int, ...], outputs: int) -> BundleConfig:
    """Penguin-12's own Hub layout (no config.json): everything but mean/std is fixed by design."""
    mean_std = root / MEAN_STD_FILE
    if not mean_std.is_file():
        raise ModelLoadError(
            f"{root} holds Penguin-12 weights but no {MEAN_STD_FILE}: refusing to serve it. "
            "The model was trained on inputs normalised with its training set's statistics; "
            "guessing them (e.g. ImageNet's) would give confident nonsense. Add the file "
            '{"mean": [r, g, b], "std": [r, g, b]} from the same release.'
        )
    if (hidden, outputs) != ((256,), 1):
        raise ModelLoadError(
            f"Penguin-12's head is Linear(1024, 256) -> SiLU -> Linear(256, 1); these weights "
            f"have hidden layers {hidden} and {outputs} output(s)"
        )
    mean, std = _read_mean_std(mean_std)
    logger.info("recognised Penguin-12's Hub layout in %s (mean/std from %s)", root, MEAN_STD_FILE)
    return BundleConfig(
        name="penguin12",
        architecture=PENGUIN12_ARCHITECTURE,
        input_size=128,
        resize="squash",
        interpolation="lanczos",
        mean=mean,
        std=std,
        embedding_dim=1024,
        head_hidden_dims=hidden,
        head_activation="silu",
        num_outputs=1,
        threshold=0.5,
    )
