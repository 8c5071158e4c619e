"""Scoring local files the way the service does: the preprocessor's ``prepare_image``, then the
two model halves, a batch at a time. No argparse and no output here: the commands render it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from penguin12.schemas import Finding

    from ..config import BundleConfig
    from ..engine import ClassifierModel, FeatureExtractorModel
    from ..settings import ModelSettings

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
#: The preprocessor's default pixel limit (PENGUIN12_MAX_IMAGE_PIXELS).
DEFAULT_MAX_PIXELS = 40_000_000


@dataclass
class Models:
    """Both halves of the served model, loaded from one settings object."""

    features: FeatureExtractorModel
    classifier: ClassifierModel

    @property
    def config(self) -> BundleConfig:
        return self.features.config

    def describe(self) -> dict[str, Any]:
        return {**self.features.info.model_dump(), "runtime": self.features.runtime}


def load_models(settings: ModelSettings) -> Models:
    # Imported here: torch is slow to import, and `penguin12 --help` should not wait for it.
    from ..engine import ClassifierModel, FeatureExtractorModel

    features, classifier = FeatureExtractorModel(settings), ClassifierModel(settings)
    features.load()
    classifier.load()
    return Models(features, classifier)


@dataclass
class Scored:
    """One file and its verdict (or why it has none)."""

    path: Path
    prediction: str | None = None
    fake_probability: float | None = None
    confidence: float | None = None
    assessment: str | None = None
    error: str | None = None
    # Set by cli.evidence.apply_file_evidence: what the file's own metadata says.
    evidence: list[Finding] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path)}
        if self.error is not None:
            out["error"] = self.error
        else:
            out.update(
                prediction=self.prediction,
                fake_probability=self.fake_probability,
                confidence=self.confidence,
                assessment=self.assessment,
            )
            if self.evidence is not None:
                out["evidence"] = [f.model_dump() for f in self.evidence]
        return out


def _natural(path: Path) -> tuple[tuple[int, int, str], ...]:
    """img2 before img10."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", str(path))
    )


def find_images(paths: Iterable[Path]) -> list[Path | tuple[Path, str]]:
    """Files to score, in order: folders searched recursively for image suffixes (sorted);
    explicit files are kept whatever their suffix; missing paths become (path, error)."""
    found: list[Path | tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"), key=_natural)
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            found.append((path, "no such file or folder"))
    return found


def score_images(
    models: Models,
    items: Sequence[Path | tuple[Path, str]],
    *,
    batch_size: int,
    max_pixels: int,
    on_progress: Callable[[int], None] = lambda n: None,
) -> list[Scored]:
    """prepare_image (the preprocessor's code) then embed + predict, ``batch_size`` at a time."""
    from penguin12.imaging import ImageRejected, prepare_image

    preprocessing = models.features.preprocessing
    results: list[Scored] = []
    pending: list[tuple[Scored, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        embeddings = models.features.embed(np.stack([pixels for _, pixels in pending]))
        for (scored, _), pred in zip(pending, models.classifier.predict(embeddings), strict=True):
            scored.prediction = pred.prediction
            scored.fake_probability = pred.fake_probability
            scored.confidence = pred.confidence
            scored.assessment = pred.assessment
        on_progress(len(pending))
        pending.clear()

    for item in items:
        if isinstance(item, tuple):
            results.append(Scored(item[0], error=item[1]))
            on_progress(1)
            continue
        scored = Scored(item)
        results.append(scored)
        try:
            prepared = prepare_image(
                item.read_bytes(), preprocessing=preprocessing, max_pixels=max_pixels
            )
        except ImageRejected as exc:
            scored.error = str(exc)
            on_progress(1)
            continue
        except OSError as exc:
            scored.error = f"cannot read: {exc.strerror or exc}"
            on_progress(1)
            continue
        pending.append((scored, prepared.pixels))
        if len(pending) >= batch_size:
            flush()
    flush()
    return results
