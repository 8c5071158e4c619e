"""Offline ``detect`` and ``eval``: the service's preprocessing and model code, without Kafka.

    python -m penguin12_model detect IMAGE_OR_FOLDER... [--json] [--batch-size 16]
    python -m penguin12_model eval FOLDER [--json] [--roc-png roc.png]
    penguin12 detect|eval ...          (the client's command, when this package is installed)

``detect`` prints one verdict per image (folders are searched recursively for .jpg/.jpeg/.png/
.webp/.bmp). Exit status: 0 every image REAL, 1 any FAKE, 2 any error (same as ``penguin12
submit --wait``). ``eval`` reads ``FOLDER/real`` and ``FOLDER/fake`` and reports accuracy at
the bundle's threshold, ROC AUC, the confusion matrix and the threshold maximising Youden's J.

The model comes from the same settings as the services (``PENGUIN12_MODEL_*``: source, dir,
hf_repo, runtime, ...); ``--model-dir``, ``--source``, ``--runtime`` and ``--threads`` override
them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .file_evidence import apply_file_evidence, print_file_evidence

EXIT_REAL, EXIT_FAKE, EXIT_ERROR = 0, 1, 2
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
#: The preprocessor's default pixel limit (PENGUIN12_MAX_IMAGE_PIXELS).
DEFAULT_MAX_PIXELS = 40_000_000
DEMO_NOTE = (
    "DEMO: the model is a demo bundle with random weights; these verdicts mean nothing "
    "(load the real Penguin-12 weights for meaningful results)."
)

logger = logging.getLogger("penguin12.model.cli")


# ----------------------------------------------------------------------------- parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (defaults from PENGUIN12_MODEL_* like the services)")
    group.add_argument("--model-dir", type=Path, help="local bundle directory (source=local)")
    group.add_argument(
        "--source", choices=("auto", "local", "hub", "embedded", "demo"), help="bundle source"
    )
    group.add_argument(
        "--runtime", choices=("auto", "torch", "onnxruntime"), help="backbone runtime"
    )
    group.add_argument("--threads", type=int, help="intra-op threads (default 1; 0 = all cores)")
    group.add_argument(
        "--batch-size", type=int, default=16, help="images per model call (default 16)"
    )
    group.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse larger images, like the preprocessor (default %(default)s)",
    )
    # SUPPRESS: do not overwrite a --no-progress/-v given to a parent parser (penguin12 CLI).
    parser.add_argument(
        "--no-progress", action="store_true", default=argparse.SUPPRESS, help="no progress bar"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log model loading"
    )


def register(subparsers: Any) -> None:
    """Add ``detect`` and ``eval`` to an argparse subparsers object (each sets ``func``)."""
    detect = subparsers.add_parser(
        "detect",
        help="run the model locally on image files or folders (no services needed)",
        description="Run the Penguin12 model locally (same preprocessing and model code as "
        "the services). Exit status: 0 all REAL, 1 any FAKE, 2 any error.",
    )
    detect.add_argument(
        "paths", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER", help="image file or folder"
    )
    detect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_model_options(detect)
    detect.set_defaults(func=cmd_detect)

    evaluate = subparsers.add_parser(
        "eval",
        help="measure the model on a labelled folder (FOLDER/real, FOLDER/fake)",
        description="Score every image under FOLDER/real and FOLDER/fake and report accuracy, "
        "ROC AUC, the confusion matrix and the best threshold (Youden's J).",
    )
    evaluate.add_argument("folder", type=Path, metavar="FOLDER", help="holds real/ and fake/")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of tables")
    evaluate.add_argument("--roc-png", type=Path, metavar="PATH", help="write the ROC curve here")
    _add_model_options(evaluate)
    evaluate.set_defaults(func=cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m penguin12_model",
        description="Penguin12 model, offline: detect deepfakes in local images or evaluate "
        "the model on a labelled folder.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


# ------------------------------------------------------------------------------ model


class _DropDemoNotices(logging.Filter):
    """The CLI prints one DEMO banner itself; the library's DEMO log lines would repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DEMO" not in record.getMessage()


_DEMO_FILTER = _DropDemoNotices()


@contextlib.contextmanager
def _cli_logging(verbose: bool) -> Iterator[None]:
    """Warnings (or INFO with -v) of the model engine on stderr while the model loads; the
    logger's previous level and filters are restored afterwards (in-process callers, tests)."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    model_logger = logging.getLogger("penguin12.model")
    level = model_logger.level
    model_logger.setLevel(logging.INFO if verbose else logging.WARNING)
    model_logger.addFilter(_DEMO_FILTER)
    try:
        yield
    finally:
        model_logger.removeFilter(_DEMO_FILTER)
        model_logger.setLevel(level)


@dataclass
class Models:
    features: Any  # FeatureExtractorModel (imported lazily: torch is slow to import)
    classifier: Any  # ClassifierModel

    @property
    def config(self) -> Any:
        return self.features.config

    def describe(self) -> dict[str, Any]:
        info = self.features.info
        return {**info.model_dump(), "runtime": self.features.runtime}


def load_models(args: argparse.Namespace) -> Models:
    from .engine import ClassifierModel, FeatureExtractorModel
    from .loading import ModelSettings

    overrides: dict[str, Any] = {}
    if args.model_dir is not None:
        overrides["dir"] = args.model_dir
        overrides["source"] = "local"
    if args.source:
        overrides["source"] = args.source
    if args.runtime:
        overrides["runtime"] = args.runtime
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    settings = ModelSettings(**overrides)
    features, classifier = FeatureExtractorModel(settings), ClassifierModel(settings)
    features.load()
    classifier.load()
    return Models(features, classifier)


@dataclass
class Scored:
    path: Path
    label: str | None = None
    fake_probability: float | None = None
    confidence: float | None = None
    assessment: str | None = None
    error: str | None = None
    # Set by file_evidence.apply_file_evidence: what the file's own metadata says.
    evidence: list[Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path)}
        if self.error is not None:
            out["error"] = self.error
        else:
            out.update(
                label=self.label,
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
            scored.label = pred.label
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


def _run_scoring(
    args: argparse.Namespace, items: Sequence[Path | tuple[Path, str]], err: Any
) -> tuple[Models, list[Scored], float]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with (
        _cli_logging(getattr(args, "verbose", False)),
        err.status("loading the model...", spinner="dots"),
    ):
        models = load_models(args)
    if models.features.info.demo:
        err.print(f"[bold yellow]{DEMO_NOTE}[/]", highlight=False)
    started = time.perf_counter()
    disabled = getattr(args, "no_progress", False) or not err.is_terminal or len(items) <= 1
    with Progress(
        TextColumn("scoring"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=disabled,
    ) as progress:
        task = progress.add_task("scoring", total=len(items))
        results = score_images(
            models,
            items,
            batch_size=max(1, args.batch_size),
            max_pixels=args.max_pixels,
            on_progress=lambda n: progress.advance(task, n),
        )
    return models, results, time.perf_counter() - started


def _consoles() -> tuple[Any, Any]:
    from rich.console import Console

    out, err = Console(), Console(stderr=True)
    if not out.is_terminal:  # piped: do not fold paths at 80 columns
        out.width = max(out.width, 120)
    return out, err


def _print_json(doc: dict[str, Any]) -> None:
    # Plain print: rich would wrap long lines, inside JSON strings too.
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def _model_line(models: Models) -> str:
    from rich.markup import escape

    d = models.describe()
    demo = " [bold yellow]DEMO[/]" if d["demo"] else ""
    return (
        f"model [bold]{escape(d['name'])}[/] version {d['version']} "
        f"({escape(d['architecture'])}, {d['runtime']}){demo}"
    )


# ----------------------------------------------------------------------------- detect


def cmd_detect(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from .errors import ModelLoadError

    out, err = _consoles()
    items = find_images(args.paths)
    if not items:
        err.print(
            "[red]error:[/] no images found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")"
        )
        return EXIT_ERROR
    try:
        models, results, elapsed = _run_scoring(args, items, err)
    except ModelLoadError as exc:
        err.print(f"[red]error:[/] cannot load the model: {exc}", highlight=False)
        return EXIT_ERROR
    apply_file_evidence(results, models.features.info)
    cfg = models.config
    errors = sum(r.error is not None for r in results)
    positives = sum(r.label == cfg.positive_label for r in results)
    if args.json:
        doc = {
            "model": models.describe(),
            "threshold": cfg.threshold,
            "positive_label": cfg.positive_label,
            "results": [r.to_json() for r in results],
            "summary": {
                "images": len(results),
                cfg.positive_label.lower(): positives,
                cfg.negative_label.lower(): len(results) - positives - errors,
                "errors": errors,
                "seconds": round(elapsed, 3),
            },
        }
        _print_json(doc)
    else:
        table = Table(title=None, show_edge=False, pad_edge=False)
        table.add_column("image", overflow="fold")
        table.add_column("verdict")
        table.add_column(f"P({cfg.positive_label})", justify="right")
        table.add_column("confidence", justify="right")
        table.add_column("assessment")
        if errors:
            table.add_column("error", overflow="fold")
        for r in results:
            row: list[Text | str]
            if r.error is not None:
                row = [Text(_shown(r.path)), Text("ERROR", "red"), "", "", "", Text(r.error)]
            else:
                colour = "red" if r.label == cfg.positive_label else "green"
                row = [
                    Text(_shown(r.path)),
                    Text(str(r.label), colour),
                    f"{r.fake_probability:.3f}",
                    f"{r.confidence:.3f}",
                    str(r.assessment),
                ]
                if errors:
                    row.append("")
            table.add_row(*row)
        out.print(_model_line(models), highlight=False)
        if cfg.caveat:
            from rich.markup import escape

            out.print(f"[dim]{escape(cfg.caveat)}[/]", highlight=False)
        out.print(table)
        print_file_evidence(results, out)
        out.print(
            f"{len(results)} image(s): {positives} {cfg.positive_label}, "
            f"{len(results) - positives - errors} {cfg.negative_label}, {errors} error(s) "
            f"in {elapsed:.1f}s (threshold {cfg.threshold:g})",
            highlight=False,
        )
    if errors:
        return EXIT_ERROR
    return EXIT_FAKE if positives else EXIT_REAL


# ------------------------------------------------------------------------------- eval


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
    from .evaluation import best_threshold, confusion, roc_auc

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

    from .errors import ModelLoadError
    from .evaluation import OperatingPoint, draw_roc_png, roc_curve

    out, err = _consoles()
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
        models, results, elapsed = _run_scoring(args, [*real, *fake], err)
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
        _print_json(report)
        return code

    def fmt(v: float | None, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    counts, cm = report["counts"], report["confusion_matrix"]
    out.print(_model_line(models), highlight=False)
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
