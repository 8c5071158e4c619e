"""Binary-classification metrics for ``eval`` (numpy only) and an ROC plot drawn with Pillow.

Convention: ``y_true`` is 1 for the positive class (FAKE) and 0 for the negative (REAL);
``scores`` are P(positive); an image is called positive when ``score >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} entries but scores has {s.size}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    if y.all() or not y.any():
        raise ValueError("ROC needs both classes (at least one positive and one negative)")
    return y, s


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), one point per distinct score, thresholds descending.

    The first point is (0, 0) with threshold +inf; point i is "positive iff score >=
    thresholds[i]". Tied scores move the curve diagonally (as scikit-learn does).
    """
    y, s = _check(y_true, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each score
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, s[last_of_run]]


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative), ties 1/2.

    Computed from average ranks (Mann-Whitney U), which equals the trapezoidal area under
    :func:`roc_curve`.
    """
    y, s = _check(y_true, scores)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # 1-based rank of each distinct score's first
    avg_rank = first_rank + (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    tpr: float
    fpr: float

    @property
    def youden_j(self) -> float:
        return self.tpr - self.fpr


def best_threshold(y_true: np.ndarray, scores: np.ndarray) -> OperatingPoint:
    """The threshold maximising Youden's J = TPR - FPR (the highest one among ties)."""
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    j = tpr[1:] - fpr[1:]  # skip the +inf point (nothing called positive)
    i = int(np.argmax(j)) + 1
    return OperatingPoint(float(thresholds[i]), float(tpr[i]), float(fpr[i]))


@dataclass(frozen=True)
class Confusion:
    """Counts with FAKE (1) as the positive class."""

    tn: int
    fp: int
    fn: int
    tp: int

    @property
    def total(self) -> int:
        return self.tn + self.fp + self.fn + self.tp

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.total if self.total else float("nan")


def confusion(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> Confusion:
    y = np.asarray(y_true).astype(bool).ravel()
    pred = np.asarray(scores, dtype=np.float64).ravel() >= threshold
    return Confusion(
        tn=int((~y & ~pred).sum()),
        fp=int((~y & pred).sum()),
        fn=int((y & ~pred).sum()),
        tp=int((y & pred).sum()),
    )


# ------------------------------------------------------------------------------- plot


def draw_roc_png(
    path: Path,
    fpr: np.ndarray,
    tpr: np.ndarray,
    auc: float,
    *,
    point: OperatingPoint | None = None,
    title: str = "ROC curve",
    size: int = 560,
) -> Path:
    """Write an ROC plot (curve, chance diagonal, grid, optional operating point) as PNG."""
    from PIL import Image, ImageDraw, ImageFont

    def font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
        try:
            return ImageFont.load_default(size=px)
        except (TypeError, OSError):  # old Pillow or no FreeType: the bitmap font
            return ImageFont.load_default()

    small, normal = font(max(10, size // 45)), font(max(12, size // 35))
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = (
        int(size * 0.14),
        int(size * 0.10),
        int(size * 0.95),
        int(size * 0.86),
    )
    w, h = right - left, bottom - top

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + x * w, bottom - y * h

    for k in range(6):  # grid and tick labels at 0, 0.2, ..., 1
        v = k / 5
        draw.line([xy(v, 0), xy(v, 1)], fill=(230, 230, 230))
        draw.line([xy(0, v), xy(1, v)], fill=(230, 230, 230))
        draw.text((xy(v, 0)[0], bottom + 6), f"{v:.1f}", fill="black", font=small, anchor="mt")
        draw.text((left - 6, xy(0, v)[1]), f"{v:.1f}", fill="black", font=small, anchor="rm")
    for k in range(20):  # dashed chance diagonal
        a, b = k / 20, (k + 0.5) / 20
        draw.line([xy(a, a), xy(b, b)], fill=(150, 150, 150), width=1)
    draw.rectangle([left, top, right, bottom], outline="black")
    curve = [xy(float(x), float(y)) for x, y in zip(fpr, tpr, strict=True)]
    if len(curve) > 1:
        draw.line(curve, fill=(31, 119, 180), width=3, joint="curve")
    if point is not None:
        px, py = xy(point.fpr, point.tpr)
        r = max(4, size // 100)
        draw.ellipse([px - r, py - r, px + r, py + r], outline=(214, 39, 40), width=2)
        draw.text(
            (px + 2 * r, py + 2 * r),
            f"J={point.youden_j:.2f} @ {point.threshold:.3g}",
            fill=(214, 39, 40),
            font=small,
            anchor="la",
        )
    draw.text(
        (size / 2, top / 2), f"{title} (AUC = {auc:.3f})", fill="black", font=normal, anchor="mm"
    )
    draw.text(
        ((left + right) / 2, size - 8),
        "False positive rate",
        fill="black",
        font=normal,
        anchor="md",
    )
    label = Image.new("RGB", (h, int(size * 0.05)), "white")
    ImageDraw.Draw(label).text(
        (h / 2, label.height / 2), "True positive rate", fill="black", font=normal, anchor="mm"
    )
    img.paste(label.rotate(90, expand=True), (2, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path
