"""Issue #13: the pipeline on a secured broker: a SASL_SSL (SCRAM) listener of the project's
Kafka jars with certificates made here by `openssl`, and Redis over TLS with a password. Wrong
credentials stop a service at start with a clear error. JVM heaps are small and the deadlines
generous: this machine may be shared and slow.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from conftest import ROOT, Stack, wait_for
from penguin12.settings import CommonSettings
from penguin12.state import redis_client
from penguin12_devstack.kafka import (
    ensure_kafka_jars,
    start_kafka,
    wait_kafka_ready,
)
from penguin12_devstack.ports import free_ports
from penguin12_devstack.redis_server import start_redis

SCRAM_USER = "penguin12-app"
SCRAM_PASSWORD = "s3cret-Scram-pw-7f1c"  # made up for this test broker only
REDIS_PASSWORD = "s3cret-Redis-pw-29ad"  # and this test Redis


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A CA and a server certificate for localhost/127.0.0.1; returns (CA PEM, server key+chain PEM)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=penguin12-test-ca",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip
    keystore = directory / "server-keystore.pem"  # Kafka's PEM keystore: PKCS#8 key + chain
    keystore.write_text(
        (directory / "server.key").read_text() + (directory / "server.pem").read_text()
    )
    return directory / "ca.pem", keystore


@dataclass
class SecureBroker:
    bootstrap: str  # the SASL_SSL listener, as clients must use it
    ca_file: Path


@dataclass
class Certificates:
    ca_file: Path
    keystore: Path  # key + certificate chain, one PEM
    key_file: Path
    cert_file: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("certs")
    ca_file, keystore = make_certificates(directory)
    return Certificates(ca_file, keystore, directory / "server.key", directory / "server.pem")


@pytest.fixture(scope="module")
def secure_redis(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[str]:
    """A redis-server that takes only TLS and a password; yields its rediss:// base URL."""
    base = tmp_path_factory.mktemp("redis-tls")
    port = free_ports(1)[0]
    server = start_redis(
        data_dir=base / "data",
        log_file=base / "redis.log",
        port=port,
        extra_args=[
            "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(certificates.cert_file),
            "--tls-key-file", str(certificates.key_file),
            "--tls-ca-cert-file", str(certificates.ca_file),
            "--tls-auth-clients", "no",
            "--requirepass", REDIS_PASSWORD,
        ],
    )  # fmt: skip
    url = f"rediss://localhost:{port}"
    settings = CommonSettings(
        redis_password=REDIS_PASSWORD, redis_ssl_ca_file=str(certificates.ca_file)
    )
    try:
        wait_for(lambda: _pings(f"{url}/0", settings), 60, 0.2, "redis over TLS")
        yield url
    finally:
        server.stop()


def _pings(url: str, settings: CommonSettings) -> bool:
    try:
        return bool(redis_client(url, settings).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def secure_broker(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[SecureBroker]:
    base = tmp_path_factory.mktemp("sasl-ssl")
    ca_file, keystore = certificates.ca_file, certificates.keystore
    port, internal, controller = free_ports(3)
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    broker = start_kafka(
        jars_dir=ensure_kafka_jars(ROOT / ".cache" / "kafka"),
        data_dir=base / "kafka",
        log_file=base / "kafka.log",
        port=port,
        controller_port=controller,
        heap="256m",
        scram_users={SCRAM_USER: SCRAM_PASSWORD},
        extra_config={
            "listeners": (
                f"SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal},"
                f"CONTROLLER://127.0.0.1:{controller}"
            ),
            "advertised.listeners": f"SASL_SSL://localhost:{port},INTERNAL://127.0.0.1:{internal}",
            "listener.security.protocol.map": (
                "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "inter.broker.listener.name": "INTERNAL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
        },
    )
    try:
        wait_kafka_ready(
            f"127.0.0.1:{internal}", 180, log_file=broker.log_file, process=broker.process
        )
        yield SecureBroker(f"localhost:{port}", ca_file)
    finally:
        broker.stop()


def secure_env(broker: SecureBroker, password: str = SCRAM_PASSWORD) -> dict[str, str]:
    return {
        "PENGUIN12_KAFKA_BOOTSTRAP": broker.bootstrap,
        "PENGUIN12_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PENGUIN12_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "PENGUIN12_KAFKA_SASL_USERNAME": SCRAM_USER,
        "PENGUIN12_KAFKA_SASL_PASSWORD": password,
        "PENGUIN12_KAFKA_SSL_CA_FILE": str(broker.ca_file),
    }


def test_pipeline_completes_jobs_over_sasl_ssl_scram_and_redis_over_tls(
    secure_broker: SecureBroker,
    secure_redis: str,
    make_stack: Callable[..., Stack],
    photos: dict[str, bytes],
) -> None:
    stack = make_stack(
        **secure_env(secure_broker),
        PENGUIN12_STATE_REDIS_URL=f"{secure_redis}/0",
        PENGUIN12_CACHE_REDIS_URL=f"{secure_redis}/1",
        PENGUIN12_REDIS_PASSWORD=REDIS_PASSWORD,
        PENGUIN12_REDIS_SSL_CA_FILE=str(secure_broker.ca_file),
    ).start_all()
    ids = []
    for data in list(photos.values())[:3]:
        response = stack.submit(data)
        assert response.status_code == 202, response.text
        ids.append(response.json()["request_id"])
    assert [stack.wait_final(i, 180)["status"] for i in ids] == ["COMPLETED"] * 3
    for proc in stack.processes.values():  # the passwords are never written to a log
        log = proc.log_file.read_text(errors="replace")
        assert SCRAM_PASSWORD not in log and REDIS_PASSWORD not in log, proc.name
    # Both DBs were used through TLS with the password: job state (0), embedding cache (1).
    settings = CommonSettings(
        redis_password=REDIS_PASSWORD, redis_ssl_ca_file=str(secure_broker.ca_file)
    )
    assert redis_client(f"{secure_redis}/0", settings).exists(f"penguin12:job:{ids[0]}")
    assert redis_client(f"{secure_redis}/1", settings).dbsize() > 0


@pytest.mark.parametrize("service", ["preprocessor", "classifier"])
def test_wrong_kafka_credentials_stop_the_service_at_start_with_a_clear_error(
    secure_broker: SecureBroker, make_stack: Callable[..., Stack], service: str
) -> None:
    wrong = "not-the-password"
    stack = make_stack(**secure_env(secure_broker, password=wrong))
    started = time.monotonic()
    proc = stack.start(service, wait=False)
    # Start-up would wait up to 120 s for an unreachable broker; a refusal must not wait.
    wait_for(lambda: proc.process.poll() is not None, 90, 0.5, f"{service} to give up")
    elapsed = time.monotonic() - started
    log = proc.log_file.read_text(errors="replace")
    assert proc.process.returncode != 0
    assert "refused the connection" in log, log[-3000:]
    assert f"as user {SCRAM_USER!r}" in log and "Authentication failed" in log, log[-3000:]
    assert wrong not in log
    assert elapsed < 90
