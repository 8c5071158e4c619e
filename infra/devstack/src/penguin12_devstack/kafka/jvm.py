"""How a local Kafka JVM is launched: which ``java``, which flags, and a class-data archive.

Every pytest session starts a broker, so its start-up time matters: the flags cap the heap
for a 2-core / 24 GiB box, a test broker uses the C1 JIT only, and an AppCDS archive of the
broker's classes (dumped once, then mapped) roughly halves JVM start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

__all__ = [
    "BROKER_JVM_OPTS",
    "FAST_START_JVM_OPTS",
    "TOOL_JVM_OPTS",
    "cds_options",
    "java_launcher",
]

# Heap is capped so a developer's 2-core / 24 GiB box can also run the services.
BROKER_JVM_OPTS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dlog4j2.disable.jmx=true",
)
# A test-session broker lives for minutes and moves little data: the C1 JIT alone starts
# it ~0.5 s sooner. ``make run`` (and benchmarks) keep the full JIT for throughput.
FAST_START_JVM_OPTS = ("-XX:TieredStopAtLevel=1",)
# The storage formatter is a short-lived tool: C1 only, small heap, serial GC.
TOOL_JVM_OPTS = (
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Dlog4j2.disable.jmx=true",
)


def java_launcher() -> str:
    """The ``java`` launcher: ``JAVA_HOME`` first, then ``PATH``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("a Java 17+ runtime ('java') is needed to run the Kafka broker")
    return java


def cds_options(
    java: str, jars_dir: Path, *, may_dump: bool
) -> tuple[list[str], tuple[Path, Path] | None]:
    """JVM flags for an AppCDS archive of the broker's classes (halves JVM start-up).

    The archive sits beside the jars (a refetch drops it) and is keyed by the ``java``
    binary, since it is only valid for the JVM that wrote it. When it is missing, a
    non-detached broker dumps it to a private temp name at exit and ``stop()`` renames
    it into place, so concurrent sessions never read a half-written archive. A stale or
    mismatching archive is merely ignored by the JVM (``-Xshare:auto``).
    """
    if os.environ.get("PENGUIN12_KAFKA_CDS", "1") == "0":
        return [], None
    real = Path(java).resolve()
    try:
        key_src = f"{real}:{real.stat().st_mtime_ns}"
    except OSError:
        return [], None
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    archive = jars_dir / f"broker-{key}.jsa"
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"], None
    if not may_dump:
        return [], None
    _remove_stale_dumps(jars_dir)
    tmp = jars_dir / f".broker-{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.jsa"
    return [f"-XX:ArchiveClassesAtExit={tmp}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"], (
        tmp,
        archive,
    )


def _remove_stale_dumps(jars_dir: Path, max_age_s: float = 3600.0) -> None:
    """Drop temp archives of brokers that never reached ``stop()`` (killed sessions)."""
    now = time.time()
    for tmp in jars_dir.glob(".broker-*.jsa"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
