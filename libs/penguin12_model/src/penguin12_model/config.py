"""The bundle's ``config.json``: everything needed to rebuild and run the model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import ConfigDict, Field, field_validator, model_validator

from penguin12.imaging import Interpolation, Preprocessing, Resize

from .errors import ModelLoadError

logger = logging.getLogger("penguin12.model")

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class BundleConfig(pydantic.BaseModel):
    """Describes a weight bundle so that both services rebuild exactly the same network.

    The Penguin-12 architecture is not published, so the config is the single place that
    says which backbone the weights belong to and how to interpret the head's outputs.
    Unknown keys are rejected so that a typo cannot silently fall back to a default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "penguin12"
    family: str = Field(
        "torch", description="Model family (penguin12_model.family): torch or onnx_probe."
    )
    architecture: str = Field(description="Key into the family's architecture registry.")
    input_size: int = Field(224, gt=0)
    resize: Resize = Field("squash", description="squash, or shorter_side_center_crop.")
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    embedding_dim: int = Field(gt=0)
    labels: tuple[str, str] = ("REAL", "FAKE")
    positive_label: str = "FAKE"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    head_hidden_dims: tuple[int, ...] = ()
    head_activation: Literal["relu", "silu"] = "relu"
    num_outputs: int = Field(
        1, description="1 = sigmoid P(positive_label); 2 = softmax over `labels` in order."
    )
    calibration: tuple[float, float] | None = Field(
        None,
        description=(
            "Platt scaling (a, b) of the head's probability in logit space: "
            "sigmoid(a * logit(p) + b). None: the head's probability as it is."
        ),
    )
    abstain_band: tuple[float, float] | None = Field(
        None,
        description=(
            "(T_lo, T_hi) on the calibrated probability: <= T_lo likely_real, >= T_hi "
            "likely_fake, between inconclusive. None: the single threshold decides."
        ),
    )
    license: str | None = None
    origin: str | None = None
    caveat: str | None = None
    demo: bool = False

    @field_validator("abstain_band")
    @classmethod
    def _band_ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0.0 <= value[0] <= value[1] <= 1.0:
            raise ValueError(f"abstain_band must be 0 <= T_lo <= T_hi <= 1, got {value}")
        return value

    @field_validator("std")
    @classmethod
    def _std_positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in value):
            raise ValueError("std values must be > 0")
        return value

    @field_validator("head_hidden_dims")
    @classmethod
    def _hidden_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(d <= 0 for d in value):
            raise ValueError("head_hidden_dims must all be > 0")
        return value

    @field_validator("num_outputs")
    @classmethod
    def _outputs_supported(cls, value: int) -> int:
        if value not in (1, 2):
            raise ValueError("num_outputs must be 1 (sigmoid) or 2 (softmax)")
        return value

    @model_validator(mode="after")
    def _labels_consistent(self) -> BundleConfig:
        if self.labels[0] == self.labels[1]:
            raise ValueError(f"labels must be distinct, got {self.labels}")
        if self.positive_label not in self.labels:
            raise ValueError(
                f"positive_label {self.positive_label!r} is not one of labels {self.labels}"
            )
        return self

    @property
    def preprocessing(self) -> Preprocessing:
        """The pixels this model expects from the preprocessor (its normalisation is its own)."""
        return Preprocessing(
            resize=self.resize, interpolation=self.interpolation, size=self.input_size
        )

    @property
    def negative_label(self) -> str:
        """The label reported when the positive probability is below the threshold."""
        return self.labels[1] if self.labels[0] == self.positive_label else self.labels[0]

    def canonical_json(self) -> str:
        """Whitespace- and order-independent JSON, so formatting never changes the version."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_file(cls, path: Path) -> BundleConfig:
        """Read and validate a config.json, turning every failure into a ModelLoadError."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read bundle config {path}: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise ModelLoadError(f"invalid bundle config {path}:\n{exc}") from exc

    def write(self, path: Path) -> None:
        """Write a human-readable config.json (the version hashes canonical JSON anyway)."""
        Path(path).write_text(
            json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
