"""The demo bundle: random weights, generated deterministically, for tests and the pipeline's plumbing.

Never chosen unless asked for by name (``PENGUIN12_MODEL_SOURCE=demo``): its verdicts mean nothing,
and everything that serves one says so.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from .config import BundleConfig
from .errors import ModelLoadError
from .head import build_head
from .registry import build_backbone, get_spec
from .settings import DEFAULT_BACKBONE_FILE, DEFAULT_CONFIG_FILE, DEFAULT_HEAD_FILE, ModelSettings

logger = logging.getLogger("penguin12.model")

_FILES = (DEFAULT_BACKBONE_FILE, DEFAULT_HEAD_FILE, DEFAULT_CONFIG_FILE)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _serialize(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    # Via a buffer: torch.save names the archive after the target file, so saving to a
    # temp name would change the bytes (and the version).
    buf = io.BytesIO()
    torch.save(dict(state_dict), buf)
    return buf.getvalue()


def generate_demo_bundle(dest: Path, architecture: str = "efficientnet_b0", seed: int = 0) -> Path:
    """Write a randomly initialised bundle so the pipeline runs without the real weights.

    Deterministic: the same ``architecture`` and ``seed`` give byte-identical files and so
    the same version in every process. The global RNG state is left untouched.
    """
    dest = Path(dest)
    spec = get_spec(architecture)
    config = BundleConfig(
        name=f"penguin12-demo-{architecture}",
        architecture=architecture,
        embedding_dim=spec.embedding_dim,
        demo=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(architecture)
        head = build_head(config)
    dest.mkdir(parents=True, exist_ok=True)
    _atomic_write(dest / DEFAULT_BACKBONE_FILE, _serialize(backbone.state_dict()))
    _atomic_write(dest / DEFAULT_HEAD_FILE, _serialize(head.state_dict()))
    _atomic_write(dest / DEFAULT_CONFIG_FILE, (config.model_dump_json(indent=2) + "\n").encode())
    logger.warning(
        "generated DEMO bundle %s (architecture=%s, seed=%d) with RANDOM weights: "
        "predictions from it are meaningless",
        dest,
        architecture,
        seed,
    )
    return dest


def resolve_demo(settings: ModelSettings) -> Path:
    """The demo bundle under ``cache_dir`` (generated on first use, then reused)."""
    if (settings.backbone_file, settings.head_file, settings.config_file) != _FILES:
        raise ModelLoadError("demo bundles use the default file names; unset *_FILE settings")
    dest = settings.cache_dir / f"demo-{settings.demo_architecture}-seed0"
    if all((dest / n).is_file() for n in _FILES):
        logger.warning(
            "using DEMO bundle %s with RANDOM weights: predictions are meaningless", dest
        )
        return dest
    return generate_demo_bundle(dest, settings.demo_architecture, seed=0)
