"""Formatting a KRaft node's storage (``kafka-storage format``) before its first start.

A fresh one-node broker copies storage formatted once per jar set instead of running the
~0.7 s formatter JVM; cluster nodes and nodes with their own ids or SCRAM users are
formatted each with the formatter itself.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from penguin12_devstack.kafka.config import server_properties
from penguin12_devstack.kafka.jvm import TOOL_JVM_OPTS

__all__ = ["format_storage", "formatted_template", "random_cluster_id", "write_properties"]

_FORMAT_TIMEOUT_S = 120.0


def write_properties(path: Path, props: Mapping[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def formatted_template(
    java: str, classpath: str, log4j_opt: str, jars_dir: Path, log_file: Path
) -> Path:
    """A formatted, never-started KRaft log dir, made once per jar set and then copied.

    ``meta.properties`` holds only ids (cluster, node, directory), no path or port, and
    the static voter set keeps endpoints out of the storage, so one formatted dir is a
    valid start for every one-node broker that uses :func:`server_properties`.
    """
    template = jars_dir / "storage-template"
    if (template / "meta.properties").is_file():
        return template
    work = Path(tempfile.mkdtemp(prefix=".storage-template-", dir=jars_dir))
    try:
        props = server_properties(
            port=9092, controller_port=9093, log_dirs=work / "logs", num_partitions=1
        )
        props_file = work / "server.properties"
        write_properties(props_file, props)
        format_storage(java, classpath, log4j_opt, props_file, log_file)
        with contextlib.suppress(OSError):  # another session won the race: use theirs
            (work / "logs").rename(template)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not (template / "meta.properties").is_file():
        raise RuntimeError(f"formatting the Kafka storage template in {template} failed")
    return template


def format_storage(
    java: str,
    classpath: str,
    log4j_opt: str,
    props_file: Path,
    log_file: Path,
    cluster_id: str | None = None,
    scram_users: Mapping[str, str] | None = None,
) -> None:
    """``kafka-storage.sh format`` equivalent (``--standalone`` only for a dynamic quorum).

    Every node of one cluster must be formatted with the same ``cluster_id``. SCRAM users go
    into the initial metadata (``--add-scram``); their passwords are not logged.
    """
    cmd = [
        java,
        *TOOL_JVM_OPTS,
        log4j_opt,
        "-cp",
        classpath,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id or random_cluster_id(),
        "--config",
        str(props_file),
        "--ignore-formatted",
    ]
    if "controller.quorum.bootstrap.servers" in props_file.read_text():
        cmd.append("--standalone")  # a dynamic quorum must be formatted with its voter
    for name, password in (scram_users or {}).items():
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            cmd += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    res = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=_FORMAT_TIMEOUT_S,
        check=False,
    )
    output = (res.stdout + res.stderr).decode(errors="replace")
    with open(log_file, "a") as out:
        out.write(f"--- kafka storage format (exit {res.returncode}) ---\n{output}")
    if res.returncode != 0:
        raise RuntimeError(f"Kafka storage format failed ({res.returncode}):\n{output[-4000:]}")


def random_cluster_id() -> str:
    """Kafka's ``Uuid`` text form: URL-safe base64 of 16 bytes, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text
