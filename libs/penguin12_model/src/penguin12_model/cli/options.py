"""The model options both commands take, the one ``ModelSettings`` built from them, and the exit
statuses (the same as ``penguin12 submit --wait``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .scoring import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from ..settings import ModelSettings

EXIT_REAL, EXIT_FAKE, EXIT_ERROR = 0, 1, 2


def add_model_options(parser: argparse.ArgumentParser) -> None:
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


def settings_from_args(args: argparse.Namespace, err: Any) -> ModelSettings | None:
    """The command's one ``ModelSettings``: the environment (``PENGUIN12_MODEL_*``) with the
    command-line options on top; None (after saying why on ``err``) when they are invalid."""
    from pydantic import ValidationError

    from ..settings import ModelSettings

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
    try:
        return ModelSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        err.print(f"[red]error:[/] invalid model settings: {problems}", highlight=False)
        return None
