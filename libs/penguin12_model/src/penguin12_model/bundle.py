"""A bundle, read: its config (from config.json or inferred from the weights), files and version.

The feature extractor and the classifier read the same bundle independently, so everything here is
deterministic: the same bytes give the same version in every process.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import BundleConfig
from .errors import ModelLoadError
from .head import infer_head_layout
from .penguin12_layout import MEAN_STD_FILE, PENGUIN12_ARCHITECTURE, penguin12_config
from .registry import get_spec, infer_architecture
from .settings import DEFAULT_BACKBONE_FILE, DEFAULT_HEAD_FILE, ModelSettings, head_candidates
from .sources import first_that_loads, resolve_bundle_dir, source_order
from .weights import load_state_dict

logger = logging.getLogger("penguin12.model")


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
        return penguin12_config(root, hidden, outputs)
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
        (root / n for n in head_candidates(settings) if (root / n).is_file()),
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
    :func:`~penguin12_model.sources.source_order`. For launchers (``make run``) that decide once
    for every process; the services' own ``load()`` also loads the weights before accepting a
    source."""
    return first_that_loads(
        source_order(settings), lambda source, resolve: load_bundle(settings, resolve(), source)
    )
