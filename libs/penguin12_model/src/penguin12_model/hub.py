"""Penguin-12 from the Hugging Face Hub, through the library's own cache.

``hf_hub_download`` handles the cache layout, revisions, ``HF_HOME``/``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE``; this module adds what a service needs around it: a quick reachability probe
(so an offline machine does not wait ~25 s for retries), Penguin-12's own head file name, the
optional files, and errors that say which file of which revision could not be had.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from .errors import ModelLoadError
from .penguin12_layout import MEAN_STD_FILE
from .settings import ModelSettings, head_candidates

logger = logging.getLogger("penguin12.model")

_TRUE = {"1", "true", "yes", "on"}


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


def resolve_hub(settings: ModelSettings, local_files_only: bool) -> Path:
    """The snapshot directory holding ``hf_repo``@``hf_revision``'s backbone, head and extras."""
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
    head_names = head_candidates(settings)
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


def resolve_hub_auto(settings: ModelSettings) -> Path:
    """auto mode: the Hub if it answers a quick probe, else the local HF cache only."""
    offline = hub_offline()
    if not offline and not _hub_reachable(settings.hub_probe_timeout_s):
        # Without this, huggingface_hub retries with backoff for ~25 s before giving up.
        logger.warning("Hugging Face Hub unreachable; using the local HF cache only")
        offline = True
    return resolve_hub(settings, local_files_only=offline)
