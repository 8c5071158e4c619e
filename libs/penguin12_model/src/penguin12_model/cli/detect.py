"""``detect``: one verdict per local image, as a table or JSON; the exit status says REAL/FAKE/error."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .evidence import apply_file_evidence, print_file_evidence
from .options import EXIT_ERROR, EXIT_FAKE, EXIT_REAL, settings_from_args
from .output import consoles, model_line, print_json, score_with_progress, shown
from .scoring import IMAGE_SUFFIXES, Scored, find_images

if TYPE_CHECKING:
    from rich.text import Text


def cmd_detect(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..errors import ModelLoadError

    out, err = consoles()
    settings = settings_from_args(args, err)
    if settings is None:
        return EXIT_ERROR
    items = find_images(args.paths)
    if not items:
        err.print(
            "[red]error:[/] no images found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")"
        )
        return EXIT_ERROR
    try:
        models, results, elapsed = score_with_progress(settings, args, items, err)
    except ModelLoadError as exc:
        err.print(f"[red]error:[/] cannot load the model: {exc}", highlight=False)
        return EXIT_ERROR
    apply_file_evidence(results, models.features.info)
    cfg = models.config
    errors = sum(r.error is not None for r in results)
    positives = sum(r.prediction == cfg.positive_label for r in results)
    if args.json:
        print_json(
            {
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
        )
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
            table.add_row(*_row(r, cfg.positive_label, errors > 0))
        out.print(model_line(models), highlight=False)
        if cfg.caveat:
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


def _row(r: Scored, positive_label: str, error_column: bool) -> list[Text | str]:
    from rich.text import Text

    if r.error is not None:
        return [Text(shown(r.path)), Text("ERROR", "red"), "", "", "", Text(r.error)]
    colour = "red" if r.prediction == positive_label else "green"
    row: list[Text | str] = [
        Text(shown(r.path)),
        Text(str(r.prediction), colour),
        f"{r.fake_probability:.3f}",
        f"{r.confidence:.3f}",
        str(r.assessment),
    ]
    if error_column:
        row.append("")
    return row
