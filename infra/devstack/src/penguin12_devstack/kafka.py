"""Run a real single-node Apache Kafka broker (KRaft, no ZooKeeper) as a local process.

There is no container engine on the developer and CI machines, and the only way to
reach outside code is the package registries. So the broker's jars come from Maven
Central (``infra/kafka/pom.xml``, fetched once into a cache) and the broker runs as a
plain ``java`` process. It is used both by ``make run`` (detached) and by the pytest
fixtures (one broker per test session, on free ports).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

from penguin12_devstack.ports import (
    die_with_parent,
    log_tail,
    port_is_open,
    stop_pid_file,
    terminate_process,
)

__all__ = [
    "KafkaBroker",
    "KafkaCluster",
    "cluster_durability_properties",
    "cluster_pid_files",
    "ensure_kafka_jars",
    "kafka_version",
    "start_kafka",
    "start_kafka_cluster",
    "stop_pid_file",
    "wait_kafka_ready",
]

_MARKER = ".penguin12-kafka-jars"
_PID_FILE = "kafka.pid"
_DEFAULT_POM = Path(__file__).resolve().parents[3] / "kafka" / "pom.xml"
_MAVEN_TIMEOUT_S = 900.0
_FORMAT_TIMEOUT_S = 120.0

# Heap is capped so a developer's 2-core / 24 GiB box can also run the services.
_BROKER_JVM_OPTS = (
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
_FAST_START_JVM_OPTS = ("-XX:TieredStopAtLevel=1",)
# Keys that change what ``StorageTool format`` writes: with any of them overridden the
# shared pre-formatted template cannot be used.
_FORMAT_KEYS = frozenset(
    {
        "node.id",
        "process.roles",
        "log.dirs",
        "log.dir",
        "metadata.log.dir",
        "controller.quorum.voters",
        "controller.quorum.bootstrap.servers",
    }
)
# The storage formatter is a short-lived tool: C1 only, small heap, serial GC.
_TOOL_JVM_OPTS = (
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Dlog4j2.disable.jmx=true",
)

_LOG4J2_PROPERTIES = """\
# Written by penguin12_devstack.kafka: log to stdout, which the launcher sends to a file.
status = warn
# Kafka logs its own shutdown from a JVM shutdown hook; log4j's hook must not stop first.
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""


# --------------------------------------------------------------------------- jars


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
    jars_dir = Path(cache_dir) / f"kafka-{version}"
    marker = jars_dir / _MARKER
    if _read_text(marker) == stamp:
        return jars_dir

    jars_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(jars_dir.parent / ".kafka-jars.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read_text(marker) == stamp:  # another process fetched them meanwhile
            return jars_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven ('mvn') is needed once to fetch the Kafka broker jars")
        tmp = Path(tempfile.mkdtemp(prefix=".kafka-jars-", dir=jars_dir.parent))
        try:
            cmd = [
                mvn,
                "-B",
                "-q",
                "-ntp",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ]
            res = subprocess.run(
                cmd, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False
            )
            if res.returncode != 0:
                raise RuntimeError(
                    f"fetching Kafka jars failed ({res.returncode}): {' '.join(cmd)}\n"
                    f"{(res.stdout + res.stderr)[-4000:]}"
                )
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


# --------------------------------------------------------------------------- broker


@dataclass
class KafkaBroker:
    """A running (or already stopped) local broker; ``stop()`` is safe to call twice."""

    bootstrap: str
    process: subprocess.Popen[bytes] | None
    data_dir: Path
    log_file: Path
    pid_file: Path | None = field(default=None)
    # Class-data-sharing archive this JVM dumps at exit, and where it goes once complete.
    _cds_dump: tuple[Path, Path] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (clean controlled shutdown), wait up to ``timeout`` s, then SIGKILL."""
        proc = self.process
        if proc is not None:
            terminate_process(proc, timeout)
        if self.pid_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pid_file.unlink()
        if self._cds_dump is not None:
            tmp, final = self._cds_dump
            self._cds_dump = None
            clean_exit = proc is not None and proc.returncode in (0, 143)  # 143: SIGTERM
            if clean_exit and tmp.is_file() and tmp.stat().st_size > 0:
                os.replace(tmp, final)
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the broker answers metadata requests (see :func:`wait_kafka_ready`)."""
        wait_kafka_ready(self.bootstrap, timeout, log_file=self.log_file, process=self.process)

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost machine would: no controlled shutdown, nothing flushed."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=30)
        if self._cds_dump is not None:
            with contextlib.suppress(FileNotFoundError):
                self._cds_dump[0].unlink()
            self._cds_dump = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


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
    props = _server_properties(
        port=port,
        controller_port=controller_port,
        log_dirs=Path(data_dir).resolve() / "kraft-combined-logs",
        num_partitions=num_partitions,
    )
    if extra_config:
        props.update({k: str(v) for k, v in extra_config.items()})
    own_format = bool(scram_users) or bool(extra_config and _FORMAT_KEYS.intersection(extra_config))
    return _launch_node(
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


def _launch_node(
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
    java = _java()
    classpath = f"{jars_dir}/*"  # expanded by the JVM itself

    log_dirs = Path(props["log.dirs"])
    props_file = data_dir / "server.properties"
    log4j_file = data_dir / "log4j2.properties"
    props_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    log4j_file.write_text(_LOG4J2_PROPERTIES)
    log4j_opt = f"-Dlog4j2.configurationFile={log4j_file}"

    if not (log_dirs / "meta.properties").is_file():
        if use_template:
            template = _formatted_template(java, classpath, log4j_opt, jars_dir, log_file)
            shutil.copytree(template, log_dirs, dirs_exist_ok=True)
        else:
            _format_storage(
                java, classpath, log4j_opt, props_file, log_file, cluster_id, scram_users
            )

    if fast_start is None:
        fast_start = not detach
    cds_opts, cds_dump = _cds_options(java, jars_dir, may_dump=not detach)
    heap_opts = ("-Xms64m", f"-Xmx{heap}") if heap else ()
    cmd = [
        java,
        *_BROKER_JVM_OPTS,
        *heap_opts,  # later flags win over the defaults above
        *(_FAST_START_JVM_OPTS if fast_start else ()),
        *cds_opts,
        log4j_opt,
        f"-Dkafka.logs.dir={data_dir / 'logs'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props_file),
    ]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=detach,
            preexec_fn=None if detach else die_with_parent,
        )
    pid_file = data_dir / _PID_FILE
    pid_file.write_text(f"{proc.pid}\n")
    broker = KafkaBroker(
        bootstrap=bootstrap,
        process=proc,
        data_dir=data_dir,
        log_file=log_file,
        pid_file=pid_file,
        _cds_dump=cds_dump,
    )
    if not detach:
        atexit.register(broker.stop)
    return broker


# --------------------------------------------------------------------------- cluster

_CLUSTER_ID_FILE = "cluster-id"
CONTROLLER_NODE_ID = 100  # brokers are nodes 1..N


@dataclass
class KafkaCluster:
    """A KRaft cluster of N brokers and one dedicated controller, as local processes.

    The controller is a process of its own so that any broker (or two) can be killed while the
    cluster keeps electing leaders and shrinking ISRs: that is the fault this cluster exists to
    show. A production cluster runs three controllers; the managed services do that for you.
    """

    controller: KafkaBroker
    brokers: dict[int, KafkaBroker]
    _start_node: dict[int, Callable[[], KafkaBroker]] = field(repr=False)

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def kill(self, node_id: int) -> None:
        """kill -9 one broker."""
        self.brokers[node_id].kill()

    def restart(self, node_id: int) -> KafkaBroker:
        """Start a stopped broker again on its data and ports (it recovers and catches up)."""
        broker = self.brokers[node_id]
        if broker.alive:
            raise RuntimeError(f"broker {node_id} is still running")
        self.brokers[node_id] = self._start_node[node_id]()
        return self.brokers[node_id]

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Every broker answers and is registered: topics at full replication can be made."""
        deadline = time.monotonic() + timeout
        for broker in self.brokers.values():
            broker.wait_ready(max(1.0, deadline - time.monotonic()))
        wait_kafka_ready(
            self.bootstrap,
            max(1.0, deadline - time.monotonic()),
            log_file=self.controller.log_file,
            process=self.controller.process,
            expect_brokers=len(self.brokers),
        )

    def stop(self, timeout: float = 30.0) -> None:
        for broker in self.brokers.values():
            broker.stop(timeout)
        self.controller.stop(timeout)


def cluster_durability_properties(brokers: int) -> dict[str, str]:
    """Broker settings of an N-broker cluster: RF min(3, N), min ISR one less, for the internal
    topics too (docker-compose.yml's `cluster` profile uses the same; tests check it)."""
    replicas = min(3, brokers)
    min_isr = max(1, replicas - 1)
    return {
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        # Never elect a replica that missed acknowledged records (Kafka's default, said aloud).
        "unclean.leader.election.enable": "false",
    }


def start_kafka_cluster(
    *,
    jars_dir: Path,
    base_dir: Path,
    log_dir: Path,
    ports: list[int],
    controller_port: int,
    num_partitions: int = 12,
    detach: bool = False,
    fast_start: bool | None = None,
    heap: str = "256m",
    skip: frozenset[str] = frozenset(),
) -> KafkaCluster:
    """Start ``len(ports)`` brokers (node ids 1..N) and a controller on 127.0.0.1; returns at once.

    Brokers default to what a production cluster of three would use: replication factor
    ``min(3, N)`` and ``min.insync.replicas`` one less (also for the internal offsets and
    transaction topics), so losing one broker loses nothing and refuses nothing. Data lives in
    ``base_dir/controller`` and ``base_dir/broker-<id>``; a restart on the same ``base_dir``
    keeps the cluster's topics. Nodes named in ``skip`` ("controller", "broker-2") are assumed
    to be running already (``make run`` revives only what is missing). Call ``wait_ready()``.
    """
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    id_file = base_dir / _CLUSTER_ID_FILE
    cluster_id = _read_text(id_file)
    if not cluster_id:
        cluster_id = _random_cluster_id()
        id_file.write_text(cluster_id)
    cluster_id = cluster_id.strip()
    voters = f"{CONTROLLER_NODE_ID}@127.0.0.1:{controller_port}"

    def node(node_id: int, props: dict[str, str], name: str, bootstrap: str) -> KafkaBroker:
        if name in skip:
            return KafkaBroker(
                bootstrap, None, base_dir / name, Path(log_dir) / f"kafka-{name}.log"
            )
        return _launch_node(
            props,
            jars_dir=jars_dir,
            data_dir=base_dir / name,
            log_file=Path(log_dir) / f"kafka-{name}.log",
            bootstrap=bootstrap,
            detach=detach,
            fast_start=fast_start,
            heap=heap,
            use_template=False,
            cluster_id=cluster_id,
        )

    controller_props = {
        "process.roles": "controller",
        "node.id": str(CONTROLLER_NODE_ID),
        "controller.quorum.voters": voters,
        "listeners": f"CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT",
        "log.dirs": str(base_dir / "controller" / "metadata"),
        "num.io.threads": "2",
        "num.network.threads": "1",
        "background.threads": "2",
    }
    controller = node(
        CONTROLLER_NODE_ID, controller_props, "controller", f"127.0.0.1:{controller_port}"
    )
    starters: dict[int, Callable[[], KafkaBroker]] = {}
    for node_id, port in enumerate(ports, start=1):
        props = _server_properties(
            port=port,
            controller_port=controller_port,
            log_dirs=base_dir / f"broker-{node_id}" / "logs",
            num_partitions=num_partitions,
        )
        props.update(
            {
                "process.roles": "broker",
                "node.id": str(node_id),
                "controller.quorum.voters": voters,
                "listeners": f"PLAINTEXT://127.0.0.1:{port}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                **cluster_durability_properties(len(ports)),
            }
        )
        starters[node_id] = functools.partial(
            node, node_id, props, f"broker-{node_id}", f"127.0.0.1:{port}"
        )
    brokers = {node_id: start() for node_id, start in starters.items()}
    return KafkaCluster(controller, brokers, starters)


def cluster_pid_files(base_dir: Path, brokers: int) -> dict[str, Path]:
    """Where a detached cluster's nodes keep their pids, by name ("controller", "broker-1", ...)."""
    names = ["controller", *(f"broker-{i}" for i in range(1, brokers + 1))]
    return {name: Path(base_dir) / name / _PID_FILE for name in names}


def wait_kafka_ready(
    bootstrap: str,
    timeout: float = 60.0,
    *,
    log_file: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
    expect_brokers: int = 1,
) -> None:
    """Poll until the broker answers a metadata request, or fail with its log tail.

    With ``expect_brokers`` it also waits until that many brokers are registered (a cluster).

    A cheap TCP probe runs first (librdkafka's reconnect back-off would otherwise add
    seconds), then ``AdminClient.list_topics`` proves the broker is registered and
    serving. It then has the broker create ``__consumer_offsets`` (see
    :func:`_warm_up_group_coordinator`). Raises ``TimeoutError`` at the deadline and ``RuntimeError`` at once if
    ``process`` has already exited; both carry the tail of ``log_file`` when given.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, _, port_s = bootstrap.split(",")[0].strip().rpartition(":")
    port = int(port_s)
    deadline = time.monotonic() + timeout
    last_error: object = "broker port not open yet"
    admin: AdminClient | None = None
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"Kafka broker exited with code {process.returncode} before it was ready"
                + log_tail(log_file)
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"Kafka at {bootstrap} not ready after {timeout:.1f}s ({last_error})"
                + log_tail(log_file)
            )
        if not port_is_open(host or "127.0.0.1", port, timeout=min(0.5, remaining)):
            time.sleep(0.1)
            continue
        if admin is None:
            admin = AdminClient(
                {
                    "bootstrap.servers": bootstrap,
                    "reconnect.backoff.ms": 50,
                    "reconnect.backoff.max.ms": 250,
                    "socket.connection.setup.timeout.ms": 2000,
                }
            )
        try:
            md = admin.list_topics(timeout=max(0.2, min(2.0, remaining)))
        except KafkaException as exc:
            last_error = exc
            time.sleep(0.1)
            continue
        if len(md.brokers) >= expect_brokers:
            _warm_up_group_coordinator(admin)
            return
        last_error = f"{len(md.brokers)} of {expect_brokers} broker(s) registered"
        time.sleep(0.1)


# --------------------------------------------------------------------------- helpers


def _warm_up_group_coordinator(admin: AdminClient) -> None:
    """Have the broker create ``__consumer_offsets`` now, off the tests' critical path.

    Without it the first consumer group of a session waits ~3 s: its FindCoordinator
    triggers the topic's creation and librdkafka backs off before asking again. A
    describe of any group sends FindCoordinator; its answer (even an error) is ignored.
    """
    from confluent_kafka import KafkaException

    group = "penguin12-devstack-warmup"
    with contextlib.suppress(KafkaException, TimeoutError, ValueError):
        admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=5)


def _server_properties(
    *, port: int, controller_port: int, log_dirs: Path, num_partitions: int
) -> dict[str, str]:
    """Broker config for a one-node dev/test cluster tuned for fast start and small RAM."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static voter set: unlike controller.quorum.bootstrap.servers (dynamic quorum,
        # formatted with --standalone) it keeps no endpoint in the formatted storage, so
        # a formatted data_dir can be restarted on different ports.
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.partitions": str(num_partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "offsets.topic.replication.factor": "1",
        # Fewer internal partitions: the first consumer group / transaction is faster.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Small thread pools and cleaner buffer: 2 cores, 512 MiB heap.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    }


def _formatted_template(
    java: str, classpath: str, log4j_opt: str, jars_dir: Path, log_file: Path
) -> Path:
    """A formatted, never-started KRaft log dir, made once per jar set and then copied.

    ``meta.properties`` holds only ids (cluster, node, directory), no path or port, and
    the static voter set keeps endpoints out of the storage, so one formatted dir is a
    valid start for every one-node broker that uses :func:`_server_properties`.
    """
    template = jars_dir / "storage-template"
    if (template / "meta.properties").is_file():
        return template
    work = Path(tempfile.mkdtemp(prefix=".storage-template-", dir=jars_dir))
    try:
        props = _server_properties(
            port=9092, controller_port=9093, log_dirs=work / "logs", num_partitions=1
        )
        props_file = work / "server.properties"
        props_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        _format_storage(java, classpath, log4j_opt, props_file, log_file)
        with contextlib.suppress(OSError):  # another session won the race: use theirs
            (work / "logs").rename(template)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not (template / "meta.properties").is_file():
        raise RuntimeError(f"formatting the Kafka storage template in {template} failed")
    return template


def _cds_options(
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


def _format_storage(
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
        *_TOOL_JVM_OPTS,
        log4j_opt,
        "-cp",
        classpath,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id or _random_cluster_id(),
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


def _random_cluster_id() -> str:
    """Kafka's ``Uuid`` text form: URL-safe base64 of 16 bytes, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _java() -> str:
    """The ``java`` launcher: ``JAVA_HOME`` first, then ``PATH``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("a Java 17+ runtime ('java') is needed to run the Kafka broker")
    return java


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
