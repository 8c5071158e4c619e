"""Hub source through the real huggingface_hub library, against an on-disk HF cache.

The cache is laid out exactly as huggingface_hub writes it:
``models--nguyenpn--Penguin-12/{refs/main, blobs/<sha256>, snapshots/<commit>/<file>}``
with snapshot files symlinked to blobs. HF_HUB_OFFLINE=1 guarantees no network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from penguin12_model import (
    BundleConfig,
    ClassifierModel,
    FeatureExtractorModel,
    ModelLoadError,
    ModelSettings,
    build_backbone,
    bundle_version,
    resolve_bundle_dir,
)

COMMIT = hashlib.sha1(b"penguin12-test-commit").hexdigest()


def populate_hf_cache(
    hub_cache: Path, files: dict[str, Path], repo: str = "nguyenpn/Penguin-12"
) -> Path:
    """Lay out ``files`` (repo filename -> source path) as a cached snapshot; return it."""
    repo_dir = hub_cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    snapshot.mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)  # no trailing newline, like the library
    for name, src in files.items():
        data = src.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return snapshot


def test_hub_source_reads_hf_cache(make_bundle, isolated_hf: Path) -> None:
    src = make_bundle(head_hidden_dims=(8,))
    snapshot = populate_hf_cache(
        isolated_hf,
        {n: src / n for n in ("backbone_weights.pt", "classifier_head.pt", "config.json")},
    )
    settings = ModelSettings(source="hub")
    resolved = resolve_bundle_dir(settings)
    assert resolved == snapshot
    assert (resolved / "backbone_weights.pt").is_symlink()
    # auto mode takes the same path when offline
    assert resolve_bundle_dir(ModelSettings(source="auto")) == snapshot
    # pinning the commit hash works too
    assert resolve_bundle_dir(ModelSettings(source="hub", hf_revision=COMMIT)) == snapshot

    fe, clf = FeatureExtractorModel(settings), ClassifierModel(settings)
    fe.load()
    clf.load()
    expected = bundle_version(src, BundleConfig.from_file(src / "config.json"))
    assert fe.info.version == clf.info.version == expected
    emb = fe.embed(np.zeros((2, 224, 224, 3), np.uint8))
    assert len(clf.predict(emb)) == 2


def test_hub_raw_files_without_config(tmp_path: Path, isolated_hf: Path) -> None:
    """The published repo ships only the two .pt files: architecture and head are inferred."""
    torch.manual_seed(0)
    torch.save(build_backbone("tiny").state_dict(), tmp_path / "backbone_weights.pt")
    head = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(64, 2))
    torch.save(head.state_dict(), tmp_path / "classifier_head.pt")
    populate_hf_cache(
        isolated_hf, {n: tmp_path / n for n in ("backbone_weights.pt", "classifier_head.pt")}
    )

    settings = ModelSettings(source="hub")
    fe, clf = FeatureExtractorModel(settings), ClassifierModel(settings)
    fe.load()
    clf.load()
    assert fe.config.architecture == "tiny" and clf.config.num_outputs == 2
    assert not fe.info.demo and fe.info.version == clf.info.version
    preds = clf.predict(fe.embed(np.zeros((1, 224, 224, 3), np.uint8)))
    assert preds[0].prediction in ("REAL", "FAKE")


def test_hub_missing_from_offline_cache(isolated_hf: Path) -> None:
    with pytest.raises(ModelLoadError, match="offline"):
        resolve_bundle_dir(ModelSettings(source="hub", hf_repo="someone/not-cached"))
