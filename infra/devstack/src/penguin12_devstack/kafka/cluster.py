"""A local KRaft cluster: N brokers and one dedicated controller, each a process of its own.

``PENGUIN12_KAFKA_BROKERS=3 make run`` and the fault tests run it: any broker (or two) can be
killed while the cluster keeps electing leaders and shrinking ISRs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from penguin12_devstack.kafka.broker import PID_FILE, KafkaBroker, launch_node
from penguin12_devstack.kafka.config import (
    cluster_broker_properties,
    controller_properties,
)
from penguin12_devstack.kafka.readiness import wait_kafka_ready
from penguin12_devstack.kafka.storage import random_cluster_id

__all__ = ["KafkaCluster", "cluster_pid_files", "start_kafka_cluster"]

_CLUSTER_ID_FILE = "cluster-id"


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
    cluster_id = _cluster_id(base_dir)

    def node(props: dict[str, str], name: str, bootstrap: str) -> KafkaBroker:
        log_file = Path(log_dir) / f"kafka-{name}.log"
        if name in skip:
            return KafkaBroker(bootstrap, base_dir / name, log_file)
        return launch_node(
            props,
            jars_dir=jars_dir,
            data_dir=base_dir / name,
            log_file=log_file,
            bootstrap=bootstrap,
            detach=detach,
            fast_start=fast_start,
            heap=heap,
            use_template=False,
            cluster_id=cluster_id,
        )

    controller_props = controller_properties(
        controller_port=controller_port, metadata_dir=base_dir / "controller" / "metadata"
    )
    controller = node(controller_props, "controller", f"127.0.0.1:{controller_port}")
    starters: dict[int, Callable[[], KafkaBroker]] = {}
    for node_id, port in enumerate(ports, start=1):
        props = cluster_broker_properties(
            node_id=node_id,
            port=port,
            controller_port=controller_port,
            log_dirs=base_dir / f"broker-{node_id}" / "logs",
            num_partitions=num_partitions,
            brokers=len(ports),
        )
        starters[node_id] = functools.partial(node, props, f"broker-{node_id}", f"127.0.0.1:{port}")
    brokers = {node_id: start() for node_id, start in starters.items()}
    return KafkaCluster(controller, brokers, starters)


def cluster_pid_files(base_dir: Path, brokers: int) -> dict[str, Path]:
    """Where a detached cluster's nodes keep their pids, by name ("controller", "broker-1", ...)."""
    names = ["controller", *(f"broker-{i}" for i in range(1, brokers + 1))]
    return {name: Path(base_dir) / name / PID_FILE for name in names}


def _cluster_id(base_dir: Path) -> str:
    """The id every node of the cluster is formatted with: kept in ``base_dir`` for restarts."""
    id_file = base_dir / _CLUSTER_ID_FILE
    cluster_id = id_file.read_text().strip() if id_file.is_file() else ""
    if not cluster_id:
        cluster_id = random_cluster_id()
        id_file.write_text(cluster_id)
    return cluster_id
