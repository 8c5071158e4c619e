"""A real Apache Kafka (KRaft, no ZooKeeper) as local processes: jars from Maven Central.

There is no container engine on the developer and CI machines, so the broker's jars come
from Maven Central (:mod:`.jars`) and each node runs as a plain ``java`` process
(:mod:`.broker`: one combined node; :mod:`.cluster`: brokers plus a controller), configured
by :mod:`.config`, launched with :mod:`.jvm`'s flags on storage from :mod:`.storage`, and
awaited by :mod:`.readiness`. ``make run`` and the pytest fixtures import from here.
"""

from penguin12_devstack.kafka.broker import KafkaBroker, start_kafka
from penguin12_devstack.kafka.cluster import KafkaCluster, cluster_pid_files, start_kafka_cluster
from penguin12_devstack.kafka.config import CONTROLLER_NODE_ID, cluster_durability_properties
from penguin12_devstack.kafka.jars import ensure_kafka_jars, kafka_version
from penguin12_devstack.kafka.readiness import wait_kafka_ready

__all__ = [
    "CONTROLLER_NODE_ID",
    "KafkaBroker",
    "KafkaCluster",
    "cluster_durability_properties",
    "cluster_pid_files",
    "ensure_kafka_jars",
    "kafka_version",
    "start_kafka",
    "start_kafka_cluster",
    "wait_kafka_ready",
]
