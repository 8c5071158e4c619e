"""What the offline commands share on the terminal: consoles, JSON, the model line, the progress bar
while scoring, and the model engine's log lines while it loads (rich is imported lazily)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .scoring import Models, Scored, load_models, score_images

if TYPE_CHECKING:
    from ..settings import ModelSettings

DEMO_NOTE = (
    "DEMO: the model is a demo bundle with random weights; these verdicts mean nothing "
    "(load the real Penguin-12 weights for meaningful results)."
)


class _DropDemoNotices(logging.Filter):
    """The CLI prints one DEMO banner itself; the library's DEMO log lines would repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DEMO" not in record.getMessage()


_DEMO_FILTER = _DropDemoNotices()


@contextlib.contextmanager
def model_logging(verbose: bool) -> Iterator[None]:
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


def consoles() -> tuple[Any, Any]:
    """(stdout, stderr) rich consoles; a piped stdout is not folded at 80 columns."""
    from rich.console import Console

    out, err = Console(), Console(stderr=True)
    if not out.is_terminal:
        out.width = max(out.width, 120)
    return out, err


def print_json(doc: dict[str, Any]) -> None:
    # Plain print: rich would wrap long lines, inside JSON strings too.
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


def shown(path: Path) -> str:
    """The path relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def model_line(models: Models) -> str:
    from rich.markup import escape

    d = models.describe()
    demo = " [bold yellow]DEMO[/]" if d["demo"] else ""
    return (
        f"model [bold]{escape(d['name'])}[/] version {d['version']} "
        f"({escape(d['architecture'])}, {d['runtime']}){demo}"
    )


def score_with_progress(
    settings: ModelSettings,
    args: argparse.Namespace,
    items: Sequence[Path | tuple[Path, str]],
    err: Any,
) -> tuple[Models, list[Scored], float]:
    """Load the model (spinner, its warnings on stderr), then score ``items`` under a progress
    bar; returns the models, one result per item and the seconds spent scoring."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with (
        model_logging(getattr(args, "verbose", False)),
        err.status("loading the model...", spinner="dots"),
    ):
        models = load_models(settings)
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
