"""Resolve the served bundle once and copy it to a directory: the Docker images' shared bundle stage.

``python -m penguin12_model.bake /models`` resolves ``PENGUIN12_MODEL_SOURCE`` exactly as the
services would (auto: Penguin-12 from the Hub if it downloads *and* loads, else the embedded
detector), loads both halves to prove they load, copies the bundle's files (symlinks followed) to
the destination and writes ``BUNDLE.json`` saying what was chosen and why. Both model images copy
that one directory, so a rebuild of one image can never serve a different version than the other.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

from .engine import ClassifierModel, FeatureExtractorModel
from .settings import ModelSettings

logger = logging.getLogger("penguin12.model.bake")

BUNDLE_FILE = "BUNDLE.json"


def bake(dest: Path, settings: ModelSettings) -> dict[str, object]:
    features, classifier = FeatureExtractorModel(settings), ClassifierModel(settings)
    features.load()
    classifier.load()
    bundle = features.bundle
    if classifier.bundle.version != bundle.version:
        raise SystemExit(
            f"the two halves resolved different bundles ({bundle.version} vs "
            f"{classifier.bundle.version}); refusing to bake a split model"
        )
    dest.mkdir(parents=True, exist_ok=True)
    names = {settings.config_file, *bundle.files}
    for name in sorted(names):
        src = bundle.directory / name
        if src.is_file():
            shutil.copyfile(src, dest / name)  # follows the HF cache's blob symlinks
    if not (dest / settings.config_file).exists() and bundle.config_inferred:
        logger.info("bundle has no config file; the services infer it again from the same files")
    record: dict[str, object] = {
        "source": bundle.source,
        "requested": settings.source,
        "name": bundle.config.name,
        "version": bundle.version,
        "family": bundle.config.family,
        "origin": bundle.config.origin,
        "license": bundle.config.license,
        "resolved_from": str(bundle.directory),
        "preprocessing": bundle.config.preprocessing.key,
    }
    if bundle.source == "hub":
        record["hf_repo"], record["hf_revision"] = settings.hf_repo, settings.hf_revision
        record["hf_commit"] = bundle.directory.name  # the snapshot directory is the commit
    (dest / BUNDLE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m penguin12_model.bake DEST_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = ModelSettings()
    record = bake(Path(args[0]), settings)
    if settings.source == "auto" and record["source"] != "hub":
        banner = "!" * 78
        print(
            f"{banner}\nWARNING: Penguin-12 ({settings.hf_repo}@{settings.hf_revision}) could not "
            f"be downloaded and loaded;\nthese images serve the {record['source']} detector "
            f"{record['name']} {record['version']} instead (see the log above).\n{banner}",
            file=sys.stderr,
        )
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
