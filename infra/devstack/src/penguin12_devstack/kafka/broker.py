"""One local Apache Kafka node (KRaft, no ZooKeeper) as a plain ``java`` process.

Used both by ``make run`` (detached) and by the pytest fixtures (one broker per test
session, on free ports). A node's config, storage and pid file live in its ``data_dir``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from penguin12_devstack.kafka.config import FORMAT_KEYS, LOG4J2_PROPERTIES, server_properties
from penguin12_devstack.kafka.jvm import (
    BROKER_JVM_OPTS,
    FAST_START_JVM_OPTS,
    cds_options,
    java_launcher,
)
from penguin12_devstack.kafka.readiness import wait_kafka_ready
from penguin12_devstack.kafka.storage import format_storage, formatted_template, write_properties
from penguin12_devstack.process import ManagedProcess

__all__ = ["PID_FILE", "KafkaBroker", "launch_node", "start_kafka"]

PID_FILE = "kafka.pid"


@dataclass
class KafkaBroker:
    """A running (or already stopped) local broker; ``stop()`` is safe to call twice.

    ``node`` is None for a node this session did not start (``make run`` reviving a cluster
    starts only the nodes that are missing).
    """

    bootstrap: str
    data_dir: Path
    log_file: Path
    node: ManagedProcess | None = None
    # Class-data-sharing archive this JVM dumps at exit, and where it goes once complete.
    _cds_dump: tuple[Path, Path] | None = field(default=None, repr=False)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.node.process if self.node is not None else None

    @property
    def alive(self) -> bool:
        return self.node is not None and self.node.alive

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (clean controlled shutdown), wait up to ``timeout`` s, then SIGKILL."""
        if self.node is None:
            return
        self.node.stop(timeout)
        clean_exit = self.node.process.returncode in (0, 143)  # 143: SIGTERM
        self._settle_cds_dump(keep=clean_exit)

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost machine would: no controlled shutdown, nothing flushed."""
        if self.node is not None:
            self.node.kill()
        self._settle_cds_dump(keep=False)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the broker answers metadata requests (see :func:`wait_kafka_ready`)."""
        wait_kafka_ready(self.bootstrap, timeout, log_file=self.log_file, process=self.process)

    def _settle_cds_dump(self, *, keep: bool) -> None:
        """Move a complete class-data archive into place (``keep``), else drop the partial one."""
        if self._cds_dump is None:
            return
        tmp, final = self._cds_dump
        self._cds_dump = None
        if keep and tmp.is_file() and tmp.stat().st_size > 0:
            os.replace(tmp, final)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def start_kafka(
    *,
    jars_dir: Path,
    data_dir: Path,
    log_file: Path,
    port: int,
    controller_port: int,
    num_partitions: int = 12,
    detach: bool = False,
    extra_config: Mapping[str, str | int] | None = None,
    fast_start: bool | None = None,
    heap: str | None = None,
    scram_users: Mapping[str, str] | None = None,
) -> KafkaBroker:
    """Start a combined broker+controller KRaft node on 127.0.0.1 and return at once.

    Writes ``server.properties`` and a log4j2 config into ``data_dir``, formats the
    storage only when ``data_dir`` is not formatted yet (so a ``make run`` restart keeps
    its topics), then launches ``kafka.Kafka`` with stdout/stderr appended to
    ``log_file``. Call :func:`wait_kafka_ready` (or ``broker.wait_ready()``) before use.

    ``detach=True`` puts the broker in its own session so it outlives the caller (for
    ``make run``; stop it later with :func:`stop_pid_file` on ``data_dir/kafka.pid``).
    With ``detach=False`` the broker is tied to the caller: it gets SIGTERM if the
    calling thread dies and is stopped at interpreter exit, so a crashed or killed test
    session leaves no stray JVM behind. ``extra_config`` overrides/extends the broker
    properties (e.g. ``{"message.max.bytes": 10485760}``).

    Start-up speed (the broker is started by every pytest session): a fresh ``data_dir``
    gets a copy of storage formatted once per jar set instead of a ~0.7 s formatter JVM;
    the broker JVM maps a class-data-sharing archive that the first non-detached broker
    dumps at its exit (``PENGUIN12_KAFKA_CDS=0`` turns that off); and ``fast_start``
    (default: ``not detach``) limits the JIT to C1.

    ``heap`` (e.g. ``"256m"``) caps the JVM heap below the default 512 MiB. ``scram_users``
    (name -> password) are written into the storage at format time for SCRAM-SHA-256 and -512,
    as ``kafka-storage format --add-scram`` does (for a SASL listener in ``extra_config``).
    """
    props = server_properties(
        port=port,
        controller_port=controller_port,
        log_dirs=Path(data_dir).resolve() / "kraft-combined-logs",
        num_partitions=num_partitions,
    )
    if extra_config:
        props.update({k: str(v) for k, v in extra_config.items()})
    own_format = bool(scram_users) or bool(extra_config and FORMAT_KEYS.intersection(extra_config))
    return launch_node(
        props,
        jars_dir=jars_dir,
        data_dir=data_dir,
        log_file=log_file,
        bootstrap=f"127.0.0.1:{port}",
        detach=detach,
        fast_start=fast_start,
        heap=heap,
        use_template=not own_format,
        scram_users=scram_users,
    )


def launch_node(
    props: Mapping[str, str],
    *,
    jars_dir: Path,
    data_dir: Path,
    log_file: Path,
    bootstrap: str,
    detach: bool,
    fast_start: bool | None,
    heap: str | None,
    use_template: bool,
    scram_users: Mapping[str, str] | None = None,
    cluster_id: str | None = None,
) -> KafkaBroker:
    """Write a node's config, format its storage if new, and start its JVM (see start_kafka)."""
    data_dir = Path(data_dir).resolve()
    log_file = Path(log_file).resolve()
    jars_dir = Path(jars_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    java = java_launcher()
    classpath = f"{jars_dir}/*"  # expanded by the JVM itself

    log_dirs = Path(props["log.dirs"])
    props_file = data_dir / "server.properties"
    log4j_file = data_dir / "log4j2.properties"
    write_properties(props_file, props)
    log4j_file.write_text(LOG4J2_PROPERTIES)
    log4j_opt = f"-Dlog4j2.configurationFile={log4j_file}"

    if not (log_dirs / "meta.properties").is_file():
        if use_template:
            template = formatted_template(java, classpath, log4j_opt, jars_dir, log_file)
            shutil.copytree(template, log_dirs, dirs_exist_ok=True)
        else:
            format_storage(
                java, classpath, log4j_opt, props_file, log_file, cluster_id, scram_users
            )

    if fast_start is None:
        fast_start = not detach
    cds_opts, cds_dump = cds_options(java, jars_dir, may_dump=not detach)
    heap_opts = ("-Xms64m", f"-Xmx{heap}") if heap else ()
    cmd = [
        java,
        *BROKER_JVM_OPTS,
        *heap_opts,  # later flags win over the defaults above
        *(FAST_START_JVM_OPTS if fast_start else ()),
        *cds_opts,
        # An operator's own JVM flags (the collector, say) win over all of the above.
        *shlex.split(os.environ.get("PENGUIN12_KAFKA_JVM_OPTS", "")),
        log4j_opt,
        f"-Dkafka.logs.dir={data_dir / 'logs'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props_file),
    ]
    node = ManagedProcess.start(
        f"Kafka node {props['node.id']} ({bootstrap})",
        cmd,
        run_dir=data_dir,
        pid_name=PID_FILE,
        log_file=log_file,
        detach=detach,
    )
    broker = KafkaBroker(bootstrap, data_dir, log_file, node, _cds_dump=cds_dump)
    if not detach:
        atexit.register(broker.stop)  # runs before the node's own stop: keeps the CDS archive
    return broker
