"""README's "Repository layout" is the map a newcomer reads first: it must name every folder that
holds code (a deployable service, a library, a tool) and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layout_paths() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Repository layout", 1)[1].split("```", 2)[1]
    paths: set[str] = set()
    for line in block.splitlines():
        if not line or line.startswith(" "):
            continue  # a continuation of the line above
        # The first column: the leading words that are paths (a folder/ or a file.ext).
        for word in re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split():
            if not re.fullmatch(r"[\w.\-/]+", word) or not ("/" in word or "." in word):
                break
            paths.add(word.rstrip("/"))
    return paths


def _listed(name: str, listed: set[str]) -> bool:
    return name in listed or any(p.startswith(name + "/") for p in listed)


def test_every_listed_path_exists() -> None:
    missing = sorted(p for p in _layout_paths() if not (ROOT / p).exists())
    assert not missing, f"README's layout lists paths that are not in the tree: {missing}"


def test_every_code_folder_is_listed() -> None:
    listed = _layout_paths()
    top = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in {"__pycache__"}
    }
    missing = sorted(name for name in top if not _listed(name, listed))
    assert not missing, f"top-level folders missing from README's layout: {missing}"
    # Each deployable, library and tool by its own line.
    for parent in ("services", "libs", "tools", "infra", "clients"):
        for child in sorted((ROOT / parent).iterdir()):
            if child.is_dir() and not child.name.startswith((".", "__")):
                name = f"{parent}/{child.name}"
                assert _listed(name, listed), f"{name} is missing from README's layout"


def test_services_holds_only_the_four_deployables() -> None:
    """A library or a tool under services/ would look deployable: it belongs in libs/ or tools/."""
    services = {p.name for p in (ROOT / "services").iterdir() if p.is_dir()}
    assert services == {"preprocessor", "feature_extractor", "classifier", "provenance"}
