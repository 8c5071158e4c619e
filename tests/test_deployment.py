"""The Docker Compose deployment, checked without a container engine (there is none here).

- docker-compose.yml against the Compose Specification's JSON schema (the copy that the
  `check-jsonschema` package ships, Apache-2.0, from github.com/compose-spec/compose-spec);
- (the one Dockerfile: tests/test_dockerfile.py);
- the Compose topology against what `make run` starts (devstack and the settings classes);
- secure by default, and the `cluster` profile against the local cluster;
- (Prometheus configs and the Grafana dashboard: tests/test_monitoring_config.py).
"""

from __future__ import annotations

import copy
import importlib.resources
import inspect
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings

from classifier.settings import ClassifierSettings
from feature_extractor.settings import FeatureExtractorSettings
from penguin12.settings import CommonSettings
from penguin12_devstack import kafka as devkafka
from penguin12_devstack import stack
from penguin12_devstack.services import SERVICE_MODULES
from penguin12_model import ModelSettings
from preprocessor.settings import PreprocessorSettings
from provenance.settings import ProvenanceSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "prometheus.yml"

APP_SERVICES = ("preprocessor", "provenance", "feature_extractor", "classifier")
SETTINGS: dict[str, type[BaseSettings]] = {
    "preprocessor": PreprocessorSettings,
    "provenance": ProvenanceSettings,
    "feature_extractor": FeatureExtractorSettings,
    "classifier": ClassifierSettings,
}
MODEL_SERVICES = ("feature_extractor", "classifier")
# Each service's HTTP port (API) or metrics/health port (worker), as `make run` starts them.
LOCAL_PORTS = {
    "preprocessor": stack.Ports().preprocessor,
    "provenance": stack.Ports().provenance,
    "feature_extractor": stack.Ports().feature_extractor_base,
    "classifier": stack.Ports().classifier,
}


def _default(settings: type[BaseSettings], name: str) -> Any:
    """A settings field's default (the environment of this test process is not consulted)."""
    return settings.model_fields[name].default


# ------------------------------------------------------------------------ Compose schema


def _compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = _compose_schema()
    assert schema["title"] == "Compose Specification"
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: str(list(e.absolute_path)))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)

    # The validator really rejects what Compose rejects (no silently empty schema).
    broken = copy.deepcopy(compose)
    broken["services"]["preprocessor"]["depends_on"]["kafka"]["condition"] = "service_ready"
    broken["services"]["classifier"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) >= 2


# ------------------------------------------------------------- topology: compose == make run


def test_compose_runs_the_same_services_as_make_run(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(SERVICE_MODULES) == set(APP_SERVICES)
    assert set(APP_SERVICES) | {"kafka", "redis", "prometheus", "grafana", "jaeger"} <= set(
        services
    )
    # The broker is the Kafka version the local run downloads (infra/kafka/pom.xml).
    assert services["kafka"]["image"] == f"apache/kafka:{devkafka.kafka_version()}"
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        assert re.search(r":[\w.-]*\d", image), f"{name}: image {image!r} is not pinned"
    for name in APP_SERVICES:
        service = services[name]
        # How each image is built from the one Dockerfile: tests/test_dockerfile.py.
        assert service["build"]["target"] == name
        assert service["restart"] == "unless-stopped"
        assert "container_name" not in service
        deps = service["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        if name != "classifier":
            assert deps["redis"]["condition"] == "service_healthy"


def test_compose_environment_matches_the_settings_and_the_local_run(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    common = CommonSettings
    for name in APP_SERVICES:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = SETTINGS[name]
        # Every PENGUIN12_ variable is a setting the service reads (no typo is silently ignored).
        for key in env:
            assert key.startswith("PENGUIN12_"), key
            field = key.removeprefix("PENGUIN12_").lower()
            known = (
                field in settings.model_fields
                # The model part of a model service's settings (its own PENGUIN12_MODEL_ prefix).
                or (
                    name in MODEL_SERVICES
                    and key.startswith("PENGUIN12_MODEL_")
                    and key.removeprefix("PENGUIN12_MODEL_").lower() in ModelSettings.model_fields
                    and issubclass(settings, ModelSettings)
                )
            )
            assert known, f"{name}: {key} is not a setting of {settings.__name__}"
        # Topic names and partitions: the services' defaults, which `make run` uses too.
        for topic in ("preprocessed", "features", "status", "dead_letter"):
            assert env[f"PENGUIN12_TOPIC_{topic.upper()}"] == _default(common, f"topic_{topic}")
        partitions = _default(common, "topic_partitions")
        assert env["PENGUIN12_TOPIC_PARTITIONS"] == str(partitions)
        # Redis: the same DB numbers (0 job state, 1 embedding cache) on the redis service.
        for url_key in ("state_redis_url", "cache_redis_url"):
            url = urlsplit(env[f"PENGUIN12_{url_key.upper()}"])
            local = urlsplit(_default(common, url_key))
            assert (url.hostname, url.port, url.path) == ("redis", 6379, local.path)
        # Kafka: the single broker unless the operator points the services elsewhere (a cluster,
        # a managed service) through the environment; the defaults are the settings' own.
        assert env["PENGUIN12_KAFKA_BOOTSTRAP"] == "${PENGUIN12_KAFKA_BOOTSTRAP:-kafka:9092}"
        for field in ("kafka_replication_factor", "kafka_min_insync_replicas"):
            key = f"PENGUIN12_{field.upper()}"
            assert env[key] == f"${{{key}:-{_default(common, field)}}}"
        assert env["PENGUIN12_OTLP_ENDPOINT"] == "http://jaeger:4318"
        # Ports: the ones `make run` gives each service, which are also the settings' defaults.
        port = LOCAL_PORTS[name]
        port_key = "PENGUIN12_PORT" if name in ("preprocessor", "provenance") else None
        port_key = port_key or "PENGUIN12_METRICS_PORT"
        field = port_key.removeprefix("PENGUIN12_").lower()
        assert env[port_key] == str(port) == str(_default(settings, field))
    # The broker's default partition count and the local broker's are the services' too.
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_NUM_PARTITIONS"] == partitions
    num_partitions = inspect.signature(devkafka.start_kafka).parameters["num_partitions"]
    assert num_partitions.default == partitions
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    # status_url as seen from the host: the provenance port published there.
    public = services["preprocessor"]["environment"]["PENGUIN12_PUBLIC_STATUS_BASE_URL"]
    assert public.endswith(f"http://localhost:{LOCAL_PORTS['provenance']}}}")
    # One shared stage resolves the bundle for both model services, with the settings' defaults.
    bundle_args = services["model_bundle"]["build"]["args"]
    assert set(bundle_args) == {"PENGUIN12_MODEL_SOURCE", "HF_REPO", "HF_REVISION"}
    assert f"{_default(ModelSettings, 'hf_repo')}}}" in bundle_args["HF_REPO"]
    assert f"{_default(ModelSettings, 'source')}}}" in bundle_args["PENGUIN12_MODEL_SOURCE"]


def test_compose_ports_and_health_checks_match_the_local_run(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in APP_SERVICES:
        service = services[name]
        port = LOCAL_PORTS[name]
        if name in ("preprocessor", "provenance"):
            assert service["ports"] == [f"{port}:{port}"]  # the only ones on every interface
        else:
            assert "ports" not in service, f"{name} must stay scalable (no host port)"
        test = " ".join(service["healthcheck"]["test"])
        # The same readiness URL `make run` waits on (stack.up: http://127.0.0.1:<port>/readyz).
        assert f"http://127.0.0.1:{port}/readyz" in test
    published = [str(p) for s in services.values() for p in s.get("ports", [])]
    host_ports = {p.split(":")[-2] for p in published}
    assert {"8000", "8001", "9090", "3000", "16686", "9092"} <= host_ports


def test_prometheus_scrapes_every_replica_of_every_service(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    local = stack.scrape_targets(stack.Ports(), feature_extractors=3)
    assert set(local) == set(APP_SERVICES)
    for name in APP_SERVICES:
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd["names"] == [name] and sd["type"] == "A"
        assert sd["port"] == LOCAL_PORTS[name]
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"
        assert all(t.endswith(f":{LOCAL_PORTS[name]}") for t in local[name][:1])
    assert local["feature_extractor"] == [
        f"127.0.0.1:{LOCAL_PORTS['feature_extractor'] + i}" for i in range(3)
    ]
    mount = "./prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in compose["services"]["prometheus"]["volumes"]


# ------------------------------------------------------------------- secure by default (#11)


def test_only_the_two_apis_are_published_on_every_interface(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            parts = str(mapping).split(":")
            assert len(parts) in (2, 3), f"{name}: {mapping!r} (use host:container or ip:host:c)"
            if len(parts) == 2:
                assert name in ("preprocessor", "provenance"), (
                    f"{name} publishes {mapping!r} on every interface; bind it to 127.0.0.1"
                )
            else:
                assert parts[0] == "127.0.0.1", f"{name}: {mapping!r}"
    kafka = compose["services"]["kafka"]
    assert kafka["ports"] == ["127.0.0.1:9092:19092"]


def test_secrets_are_required_and_come_from_make_env(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    from penguin12_devstack.dotenv import SECRETS, write_env

    services = compose["services"]
    required: dict[str, str] = {}
    for api in ("preprocessor", "provenance"):
        env = services[api]["environment"]
        for key in ("PENGUIN12_API_KEYS", "PENGUIN12_WEBHOOK_SECRET"):
            assert env[key].startswith("${" + key + ":?"), f"{api}: {key} must be required"
            required[key] = env[key]
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert "admin" not in password.split(":?")[0]
    # `make env` writes exactly the variables compose requires, random, private, and kept.
    assert set(SECRETS) == set(required) | {"GRAFANA_ADMIN_PASSWORD"}
    target = tmp_path / ".env"
    assert write_env(target)
    first = target.read_text()
    values = dict(
        line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#")
    )
    assert set(values) == set(SECRETS)
    assert all(len(v) >= 24 for v in values.values())
    assert target.stat().st_mode & 0o777 == 0o600
    assert not write_env(target) and target.read_text() == first
    assert write_env(target, force=True) and target.read_text() != first
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^env:.*##", makefile, re.M) and "penguin12_devstack env" in makefile


def test_prometheus_lifecycle_api_is_off(compose: dict[str, Any]) -> None:
    command = compose["services"]["prometheus"]["command"]
    assert not any("enable-lifecycle" in arg or "enable-admin-api" in arg for arg in command)


# ------------------------------------------------------------------ the `cluster` profile

CLUSTER_BROKERS = ("kafka-1", "kafka-2", "kafka-3")


def _kafka_env_key(prop: str) -> str:
    """The apache/kafka image's variable for a server property (dots to underscores)."""
    return "KAFKA_" + prop.upper().replace(".", "_")


def test_cluster_profile_runs_three_brokers_and_a_controller_like_the_local_cluster(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    cluster = ("kafka-controller", *CLUSTER_BROKERS)
    for name in cluster:
        assert services[name]["profiles"] == ["cluster"], name
        assert services[name]["image"] == f"apache/kafka:{devkafka.kafka_version()}"
        assert services[name]["restart"] == "unless-stopped"
        assert "ports" not in services[name], f"{name}: the cluster publishes no host port"
    # Only the profile's services are new: the default `docker compose up` is unchanged (the
    # other profile, `ops`, holds the operator tools' one-shot container).
    profiled = {
        n: s["profiles"] for n, s in services.items() if n not in cluster and "profiles" in s
    }
    assert profiled == {"ops": ["ops"]}
    controller = services["kafka-controller"]["environment"]
    assert controller["KAFKA_PROCESS_ROLES"] == "controller"
    assert controller["KAFKA_NODE_ID"] == devkafka.CONTROLLER_NODE_ID
    voters = f"{devkafka.CONTROLLER_NODE_ID}@kafka-controller:9093"
    assert controller["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
    durability = devkafka.cluster_durability_properties(len(CLUSTER_BROKERS))
    ids = set()
    for node_id, name in enumerate(CLUSTER_BROKERS, start=1):
        env = services[name]["environment"]
        assert env["CLUSTER_ID"] == controller["CLUSTER_ID"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert env["KAFKA_NODE_ID"] == node_id
        ids.add(env["KAFKA_NODE_ID"])
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_NUM_PARTITIONS"] == _default(CommonSettings, "topic_partitions")
        # The same durability settings as PENGUIN12_KAFKA_BROKERS=3 make run (RF 3, min ISR 2).
        for prop, value in durability.items():
            assert str(env[_kafka_env_key(prop)]).lower() == value, (name, prop)
        assert {f"{name}-data:/var/lib/kafka/data"} == set(services[name]["volumes"])
        assert compose["volumes"].keys() >= {f"{name}-data", "kafka-controller-data"}
    assert ids == {1, 2, 3}
    assert durability["default.replication.factor"] == "3"
    assert durability["min.insync.replicas"] == "2"


def test_compose_header_starts_the_cluster_with_the_settings_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The documented command sets the bootstrap list and the RF/min ISR `make run` would."""
    header = COMPOSE_FILE.read_text().split("x-penguin12-env")[0]
    bootstrap = ",".join(f"{n}:9092" for n in CLUSTER_BROKERS)
    assert f"PENGUIN12_KAFKA_BOOTSTRAP={bootstrap}" in header
    assert "docker compose --profile cluster up" in header
    monkeypatch.delenv("PENGUIN12_KAFKA_REPLICATION_FACTOR", raising=False)
    monkeypatch.delenv("PENGUIN12_KAFKA_MIN_INSYNC_REPLICAS", raising=False)
    for key, value in stack.kafka_durability_env(len(CLUSTER_BROKERS)).items():
        assert f"{key}={value}" in header
