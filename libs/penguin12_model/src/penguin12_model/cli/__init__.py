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
them. This package is the command line (argparse) only: :mod:`.scoring` scores files,
:mod:`.output` and the command modules (:mod:`.detect`, :mod:`.evaluate`) render the results.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .detect import cmd_detect
from .evaluate import cmd_eval
from .options import EXIT_ERROR, EXIT_FAKE, EXIT_REAL, add_model_options

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAKE",
    "EXIT_REAL",
    "build_parser",
    "cmd_detect",
    "cmd_eval",
    "main",
    "register",
]


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
    add_model_options(detect)
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
    add_model_options(evaluate)
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
