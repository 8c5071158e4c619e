"""``eval``: score a labelled folder (``real/``, ``fake/``) and report how well the model separates them.

Accuracy at the bundle's threshold, ROC AUC, the confusion matrix, the threshold maximising Youden's
J and the model's own three-way assessments per true class; as tables, JSON, and an ROC PNG.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .options import EXIT_ERROR, EXIT_REAL, settings_from_args
from .output import consoles, model_line, print_json, score_with_progress
from .scoring import Scored, find_images


def _class_folder(root: Path, name: str) -> Path | None:
    exact = root / name
    if exact.is_dir():
        return exact
    matches = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == name]
    return matches[0] if len(matches) == 1 else None


def evaluate(
    results: Sequence[Scored], is_fake: Sequence[bool], threshold: float
) -> dict[str, Any]:
    """Metrics over the scored images (unreadable ones are counted, not scored)."""
    from ..evaluation import best_threshold, confusion, roc_auc

    ok = [i for i, r in enumerate(results) if r.error is None]
    y = np.array([is_fake[i] for i in ok], dtype=bool)
    s = np.array([results[i].fake_probability for i in ok], dtype=np.float64)
    cm = confusion(y, s, threshold)
    both = bool(y.any() and (~y).any())
    best = best_threshold(y, s) if both else None

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    # The model's own three-way reading (abstain band), per true class.
    assessments: dict[str, dict[str, int]] = {"real": {}, "fake": {}}
    for i in ok:
        counts = assessments["fake" if is_fake[i] else "real"]
        key = results[i].assessment or "none"
        counts[key] = counts.get(key, 0) + 1

    return {
        "counts": {
            "real": int((~y).sum()),
            "fake": int(y.sum()),
            "unreadable": len(results) - len(ok),
        },
        "threshold": threshold,
        "accuracy": cm.accuracy if cm.total else None,
        "roc_auc": roc_auc(y, s) if both else None,
        "confusion_matrix": {"tn": cm.tn, "fp": cm.fp, "fn": cm.fn, "tp": cm.tp},
        "precision": ratio(cm.tp, cm.tp + cm.fp),
        "recall": ratio(cm.tp, cm.tp + cm.fn),
        "specificity": ratio(cm.tn, cm.tn + cm.fp),
        "assessments": assessments,
        "best_threshold": None
        if best is None
        else {
            "threshold": best.threshold,
            "tpr": best.tpr,
            "fpr": best.fpr,
            "youden_j": best.youden_j,
            "accuracy": confusion(y, s, best.threshold).accuracy,
        },
    }


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..errors import ModelLoadError
    from ..evaluation import OperatingPoint, draw_roc_png, roc_curve

    out, err = consoles()
    settings = settings_from_args(args, err)
    if settings is None:
        return EXIT_ERROR
    root: Path = args.folder
    if not root.is_dir():
        err.print(f"[red]error:[/] {root} is not a folder", highlight=False)
        return EXIT_ERROR
    real_dir, fake_dir = _class_folder(root, "real"), _class_folder(root, "fake")
    if real_dir is None or fake_dir is None:
        err.print(
            f"[red]error:[/] {root} must contain the subfolders real/ and fake/", highlight=False
        )
        return EXIT_ERROR
    real, fake = find_images([real_dir]), find_images([fake_dir])
    if not real or not fake:
        empty = real_dir if not real else fake_dir
        err.print(f"[red]error:[/] no images in {empty}", highlight=False)
        return EXIT_ERROR
    try:
        models, results, elapsed = score_with_progress(settings, args, [*real, *fake], err)
    except ModelLoadError as exc:
        err.print(f"[red]error:[/] cannot load the model: {exc}", highlight=False)
        return EXIT_ERROR
    cfg = models.config
    is_fake = [False] * len(real) + [True] * len(fake)
    report = evaluate(results, is_fake, cfg.threshold)
    report = {"model": models.describe(), "positive_label": cfg.positive_label, **report}
    report["seconds"] = round(elapsed, 3)
    report["errors"] = [r.to_json() for r in results if r.error is not None]
    report["roc_png"] = None
    if args.roc_png is not None and report["roc_auc"] is not None:
        ok = [i for i, r in enumerate(results) if r.error is None]
        y = np.array([is_fake[i] for i in ok])
        s = np.array([results[i].fake_probability for i in ok])
        fpr, tpr, _ = roc_curve(y, s)
        best = report["best_threshold"]
        point = OperatingPoint(best["threshold"], best["tpr"], best["fpr"])
        title = f"{cfg.name} {models.features.info.version}"
        draw_roc_png(args.roc_png, fpr, tpr, report["roc_auc"], point=point, title=title)
        report["roc_png"] = str(args.roc_png)
    code = EXIT_REAL if report["roc_auc"] is not None else EXIT_ERROR
    if code != EXIT_REAL:
        err.print("[red]error:[/] real/ and fake/ both need readable images", highlight=False)
    if args.json:
        print_json(report)
        return code

    def fmt(v: float | None, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    counts, cm = report["counts"], report["confusion_matrix"]
    out.print(model_line(models), highlight=False)
    out.print(
        f"{counts['real']} real + {counts['fake']} fake images scored in {elapsed:.1f}s"
        + (f", {counts['unreadable']} unreadable (skipped)" if counts["unreadable"] else ""),
        highlight=False,
    )
    metrics = Table(show_header=False, show_edge=False, pad_edge=False)
    metrics.add_column(style="bold")
    metrics.add_column(justify="right")
    metrics.add_row("ROC AUC", fmt(report["roc_auc"]))
    metrics.add_row(f"accuracy @ {cfg.threshold:g} (bundle)", fmt(report["accuracy"]))
    metrics.add_row("precision (FAKE)", fmt(report["precision"]))
    metrics.add_row("recall / TPR (FAKE)", fmt(report["recall"]))
    metrics.add_row("specificity / TNR (REAL)", fmt(report["specificity"]))
    for truth in ("real", "fake"):
        shown = ", ".join(f"{k} {v}" for k, v in sorted(report["assessments"][truth].items()))
        metrics.add_row(f"assessments of {truth} images", shown or "n/a")
    best = report["best_threshold"]
    if best is not None:
        metrics.add_row("best threshold (Youden's J)", fmt(best["threshold"], ".4g"))
        metrics.add_row(
            "  at best: TPR / FPR / J / accuracy",
            f"{best['tpr']:.3f} / {best['fpr']:.3f} / {best['youden_j']:.3f} / "
            f"{best['accuracy']:.3f}",
        )
    out.print(metrics)
    matrix = Table(title=f"confusion matrix @ {cfg.threshold:g}", title_justify="left")
    matrix.add_column("actual \\ predicted")
    matrix.add_column(cfg.negative_label, justify="right")
    matrix.add_column(cfg.positive_label, justify="right")
    matrix.add_row(f"real ({cfg.negative_label})", str(cm["tn"]), str(cm["fp"]))
    matrix.add_row(f"fake ({cfg.positive_label})", str(cm["fn"]), str(cm["tp"]))
    out.print(matrix)
    if report["roc_png"]:
        out.print(f"ROC curve written to {report['roc_png']}", highlight=False)
    for e in report["errors"]:
        err.print(f"[yellow]skipped[/] {e['path']}: {e['error']}", highlight=False)
    return code
