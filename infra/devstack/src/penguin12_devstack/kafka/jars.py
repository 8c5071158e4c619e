"""The Kafka broker's jars: resolved by Maven from Maven Central once, then cached.

There is no container engine on the developer and CI machines, and the only way to reach
outside code is the package registries, so ``infra/kafka/pom.xml`` names the broker and
Maven copies it and its runtime dependencies into ``.cache/kafka/kafka-<version>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from penguin12_devstack.install import file_lock

__all__ = ["ensure_kafka_jars", "kafka_version"]

_MARKER = ".penguin12-kafka-jars"
# infra/devstack/src/penguin12_devstack/kafka/jars.py -> infra/kafka/pom.xml
_DEFAULT_POM = Path(__file__).resolve().parents[4] / "kafka" / "pom.xml"
_MAVEN_TIMEOUT_S = 900.0


def _pom_path() -> Path:
    """Locate the POM; ``PENGUIN12_KAFKA_POM`` overrides it for a non-editable install."""
    override = os.environ.get("PENGUIN12_KAFKA_POM")
    pom = Path(override) if override else _DEFAULT_POM
    if not pom.is_file():
        raise FileNotFoundError(
            f"Kafka POM not found at {pom}; set PENGUIN12_KAFKA_POM to infra/kafka/pom.xml"
        )
    return pom


def kafka_version() -> str:
    """The Kafka version the POM pins (single source of truth: ``<kafka.version>``)."""
    root = ET.parse(_pom_path()).getroot()
    node = root.find(
        "{http://maven.apache.org/POM/4.0.0}properties/"
        "{http://maven.apache.org/POM/4.0.0}kafka.version"
    )
    if node is None or not (node.text or "").strip():
        raise ValueError(f"{_pom_path()} has no <kafka.version> property")
    return (node.text or "").strip()


def ensure_kafka_jars(cache_dir: Path) -> Path:
    """Return a dir of jars for the Kafka broker; downloads via Maven once.

    The result is cached in ``cache_dir/kafka-<version>`` with a marker file holding the
    version and the POM's hash, so a second call runs no Maven and touches no network,
    and editing the POM triggers a fresh fetch. Maven writes into a temporary dir that is
    renamed into place, under a file lock, so concurrent sessions never see half a set.
    """
    cache_dir = Path(cache_dir).resolve()  # Maven resolves relative paths against the POM's dir
    pom = _pom_path()
    version = kafka_version()
    stamp = f"kafka_2.13 {version}\npom-sha256 {hashlib.sha256(pom.read_bytes()).hexdigest()}\n"
    jars_dir = cache_dir / f"kafka-{version}"
    marker = jars_dir / _MARKER
    if _read_text(marker) == stamp:
        return jars_dir

    with file_lock(jars_dir.parent / ".kafka-jars.lock"):
        if _read_text(marker) == stamp:  # another process fetched them meanwhile
            return jars_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven ('mvn') is needed once to fetch the Kafka broker jars")
        tmp = Path(tempfile.mkdtemp(prefix=".kafka-jars-", dir=jars_dir.parent))
        try:
            _copy_dependencies(mvn, pom, tmp)
            if not (tmp / f"kafka_2.13-{version}.jar").is_file():
                raise RuntimeError(f"Maven ran but kafka_2.13-{version}.jar is not in {tmp}")
            (tmp / _MARKER).write_text(stamp)
            tmp.chmod(0o755)  # mkdtemp made it owner-only
            if jars_dir.exists():
                shutil.rmtree(jars_dir)
            tmp.rename(jars_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return jars_dir


def _copy_dependencies(mvn: str, pom: Path, out_dir: Path) -> None:
    cmd = [
        mvn,
        "-B",
        "-q",
        "-ntp",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={out_dir}",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False)
    if res.returncode != 0:
        raise RuntimeError(
            f"fetching Kafka jars failed ({res.returncode}): {' '.join(cmd)}\n"
            f"{(res.stdout + res.stderr)[-4000:]}"
        )


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
