"""Reading weight files safely and loading them strictly.

Every family that holds torch weights reads them here: never by unpickling code
(``weights_only=True`` or safetensors), and never into a model that only half matches.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelLoadError

logger = logging.getLogger("penguin12.model")

_TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict without ever executing pickled code.

    ``.safetensors`` is read with safetensors; ``.pt``/``.pth``/``.bin``/``.ckpt`` with
    ``torch.load(weights_only=True)``. A pickle of Python objects (e.g. a whole
    ``nn.Module``) is refused with instructions for re-saving it as a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    obj: Any
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:
            raise ModelLoadError(f"cannot read safetensors file {path}: {exc}") from exc
    elif suffix in _TORCH_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            detail = next(
                (ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln),
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            raise ModelLoadError(
                f"refusing to load {path}: it is not a plain state dict but pickles Python "
                f"objects (e.g. a whole nn.Module), which weights_only=True cannot load safely "
                f"({detail}). Re-save it as a state dict in a trusted environment: "
                "obj = torch.load(path, weights_only=False); "
                "torch.save(obj.state_dict(), 'backbone_weights.pt') "
                "(or safetensors.torch.save_file(obj.state_dict(), 'x.safetensors'))."
            ) from exc
        except Exception as exc:
            raise ModelLoadError(f"cannot read torch weights file {path}: {exc}") from exc
    else:
        raise ModelLoadError(
            f"unsupported weights file type {path.name!r}: use .safetensors or "
            f"{'/'.join(sorted(_TORCH_SUFFIXES))}"
        )
    return _as_tensor_dict(obj, path)


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _as_tensor_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or a training checkpoint that wraps one."""
    if _is_tensor_dict(obj):
        return dict(obj)  # type: ignore[call-overload]
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and _is_tensor_dict(inner):
                logger.info("%s is a checkpoint; using its %r entry", path.name, key)
                return dict(inner)
        bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)][:5]
        raise ModelLoadError(
            f"{path} is not a state dict: entries {bad} are not tensors and no "
            f"{'/'.join(_CHECKPOINT_KEYS)} entry holds one"
        )
    raise ModelLoadError(
        f"{path} holds a {type(obj).__name__}, expected a state dict (mapping name -> tensor)"
    )


def _fmt_keys(keys: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def load_weights_strict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str
) -> None:
    """``load_state_dict(strict=True)`` with one readable error instead of a partial load.

    Shape mismatches are collected up front because torch raises on the first one, so the
    message lists missing keys, unexpected keys and shape mismatches together.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_fmt_keys(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_fmt_keys(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): {_fmt_keys(mismatched)}")
        raise ModelLoadError(f"{what} weights do not match the model. " + "; ".join(parts))
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # e.g. dtype that cannot be copied
        raise ModelLoadError(f"{what} weights could not be loaded: {exc}") from exc
