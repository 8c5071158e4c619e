"""What each local Kafka node is configured with: ``server.properties`` and its logging.

One combined broker+controller node (``make run``, test sessions) or a cluster of brokers
and one dedicated controller (``PENGUIN12_KAFKA_BROKERS=3``, the fault tests). The cluster's
durability settings are the ones docker-compose.yml's ``cluster`` profile uses.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CONTROLLER_NODE_ID",
    "FORMAT_KEYS",
    "LOG4J2_PROPERTIES",
    "cluster_broker_properties",
    "cluster_durability_properties",
    "controller_properties",
    "server_properties",
]

CONTROLLER_NODE_ID = 100  # a cluster's brokers are nodes 1..N

# Keys that change what ``StorageTool format`` writes: with any of them overridden the
# shared pre-formatted template cannot be used.
FORMAT_KEYS = frozenset(
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

LOG4J2_PROPERTIES = """\
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


def server_properties(
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


def _voters(controller_port: int) -> str:
    return f"{CONTROLLER_NODE_ID}@127.0.0.1:{controller_port}"


def controller_properties(*, controller_port: int, metadata_dir: Path) -> dict[str, str]:
    """A cluster's dedicated controller: metadata only, small thread pools."""
    return {
        "process.roles": "controller",
        "node.id": str(CONTROLLER_NODE_ID),
        "controller.quorum.voters": _voters(controller_port),
        "listeners": f"CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT",
        "log.dirs": str(metadata_dir),
        "num.io.threads": "2",
        "num.network.threads": "1",
        "background.threads": "2",
    }


def cluster_broker_properties(
    *,
    node_id: int,
    port: int,
    controller_port: int,
    log_dirs: Path,
    num_partitions: int,
    brokers: int,
) -> dict[str, str]:
    """Broker ``node_id`` of a ``brokers``-node cluster, voting with the dedicated controller."""
    props = server_properties(
        port=port, controller_port=controller_port, log_dirs=log_dirs, num_partitions=num_partitions
    )
    props.update(
        {
            "process.roles": "broker",
            "node.id": str(node_id),
            "controller.quorum.voters": _voters(controller_port),
            "listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            **cluster_durability_properties(brokers),
        }
    )
    return props
