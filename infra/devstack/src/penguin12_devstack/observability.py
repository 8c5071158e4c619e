"""Local observability: a real Prometheus and a real OTLP trace receiver, no Docker needed.

``make run`` (``python -m penguin12_devstack up``) and the tests use this module to run what
``docker-compose.yml`` runs in containers:

- **Prometheus** from Debian's package (``/usr/bin/prometheus``; installed with apt-get when
  missing). Its config is derived from the Compose one (``prometheus.yml`` at the repository
  root: same jobs, same paths), with each job's DNS discovery replaced by the local
  ``127.0.0.1`` ports (:func:`local_prometheus_config`).
- **Jaeger** v2 (the version ``docker-compose.yml`` runs), built from its Go module and cached
  under ``.cache/``. ``go install github.com/jaegertracing/jaeger/cmd/jaeger@<version>`` is
  refused by Go because Jaeger's go.mod has a ``replace`` directive, so the module is fetched
  with ``go mod download`` and ``go build ./cmd/jaeger`` runs inside it (where the replace
  applies). Traces are read back from its query API (``/api/traces``).
- When Jaeger cannot be built, the **OpenTelemetry Collector** is the fallback: the official
  builder (``go install go.opentelemetry.io/collector/cmd/builder@<version>``) assembles one with
  the OTLP receiver and the file exporter, and traces are read back from its JSON-lines file.

Both receivers expose OTLP/HTTP, which is what the services export to
(``PENGUIN12_OTLP_ENDPOINT``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from penguin12_devstack.ports import (
    die_with_parent,
    log_tail,
    pid_alive,
    stop_pid_file,
    terminate_process,
)

__all__ = [
    "COLLECTOR_BUILDER_VERSION",
    "JAEGER_MODULE",
    "JAEGER_MODULE_VERSION",
    "ManagedProcess",
    "ObservabilityPorts",
    "Span",
    "TraceReceiver",
    "ensure_collector",
    "ensure_jaeger",
    "ensure_prometheus",
    "local_prometheus_config",
    "start_local_observability",
    "start_prometheus",
    "start_trace_receiver",
    "stop_local_observability",
    "write_prometheus_config",
]

log = logging.getLogger("penguin12.devstack.observability")

REPO_ROOT = Path(__file__).resolve().parents[4]
COMPOSE_PROMETHEUS_CONFIG = REPO_ROOT / "prometheus.yml"

# Jaeger tags every release twice: v1.76.0 is the same commit as v2.13.0, the image tag that
# docker-compose.yml pins (jaegertracing/jaeger:2.13.0). The Go module only has the v1.x tags.
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_MODULE_VERSION = "v1.76.0"
JAEGER_RELEASE = "2.13.0"
# Fallback receiver: the OpenTelemetry Collector builder and the components it assembles.
COLLECTOR_BUILDER_VERSION = "v0.140.0"
_COLLECTOR_CONTRIB_VERSION = "v0.140.0"

_GO_BUILD_TIMEOUT_S = 1800.0
_APT_TIMEOUT_S = 600.0
_PID_FILE = "process.pid"


# ------------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    """A server this module started; ``stop()`` is safe to call twice."""

    name: str
    process: subprocess.Popen[bytes]
    ready_url: str
    log_file: Path
    run_dir: Path
    # Ready once the URL answers at all (any HTTP status), not only with 200.
    any_status: bool = False

    def stop(self, timeout: float = 20.0) -> None:
        terminate_process(self.process, timeout)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / _PID_FILE).unlink()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _http_ok(self.ready_url, any_status=self.any_status):
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before "
                    f"{self.ready_url} was ready" + log_tail(self.log_file)
                )
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {self.ready_url} not ready after {timeout:.0f}s")


def _spawn(
    name: str, cmd: Sequence[str], *, run_dir: Path, log_file: Path, ready_url: str, detach: bool
) -> ManagedProcess:
    """Start ``cmd`` in ``run_dir`` (its pid file lives there, for ``stop_pid_file``)."""
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            start_new_session=detach,
            preexec_fn=None if detach else die_with_parent,
        )
    (run_dir / _PID_FILE).write_text(f"{proc.pid}\n")
    if not detach:
        atexit.register(terminate_process, proc, 20.0)
    return ManagedProcess(name, proc, ready_url, log_file, run_dir)


def _http_ok(url: str, timeout: float = 2.0, *, any_status: bool = False) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return any_status
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise installs across processes (a test session and `make run` may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------ Prometheus


def ensure_prometheus() -> str:
    """The path of ``prometheus``, installing Debian's package with apt-get if it is missing."""
    found = shutil.which("prometheus") or _existing("/usr/bin/prometheus")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("prometheus is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_lock = ["-o", "DPkg::Lock::Timeout=300"]
    install = [apt, *wait_lock, "install", "-y", "--no-install-recommends", "prometheus"]
    res = _run(install, env, _APT_TIMEOUT_S)
    if res.returncode != 0:
        _run([apt, *wait_lock, "update"], env, _APT_TIMEOUT_S)
        res = _run(install, env, _APT_TIMEOUT_S)
    found = shutil.which("prometheus") or _existing("/usr/bin/prometheus")
    if res.returncode != 0 or not found:
        raise RuntimeError(
            f"apt-get install prometheus failed ({res.returncode}):\n"
            f"{(res.stdout + res.stderr)[-4000:]}"
        )
    # Debian's package starts a system-wide Prometheus on :9090 where services may start.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["systemctl", "disable", "--now", "prometheus"], capture_output=True, timeout=30
        )
    return found


def local_prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str | None = None,
    base: Path = COMPOSE_PROMETHEUS_CONFIG,
) -> dict[str, Any]:
    """The Compose scrape config with every job pointed at the given ``host:port`` targets.

    ``targets`` maps job names (``preprocessor``, ``provenance``, ``feature_extractor``,
    ``classifier``, ``prometheus``) to addresses. A job of the base config that is not in
    ``targets`` is left out; a target job the base config lacks is an error, so the local run
    can never scrape something the Compose deployment does not.
    """
    import yaml

    config: dict[str, Any] = yaml.safe_load(base.read_text())
    known = {job["job_name"] for job in config.get("scrape_configs", [])}
    unknown = sorted(set(targets) - known)
    if unknown:
        raise ValueError(f"jobs {unknown} are not in {base} (it has {sorted(known)})")
    if scrape_interval is not None:
        config.setdefault("global", {})
        config["global"]["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
        config["global"]["scrape_timeout"] = scrape_interval
    jobs = []
    for job in config.get("scrape_configs", []):
        name = job["job_name"]
        if name not in targets:
            continue
        local = {k: v for k, v in job.items() if not k.endswith("_sd_configs")}
        local.pop("static_configs", None)
        local["static_configs"] = [{"targets": list(targets[name])}]
        jobs.append(local)
    config["scrape_configs"] = jobs
    return config


def write_prometheus_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write the config (JSON is valid YAML, which Prometheus reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def start_prometheus(
    *,
    config_file: Path,
    data_dir: Path,
    log_file: Path,
    port: int,
    detach: bool = False,
    retention: str = "2d",
) -> ManagedProcess:
    """Run Prometheus on 127.0.0.1:``port`` with ``config_file``; TSDB and pid in ``data_dir``."""
    binary = ensure_prometheus()
    data_dir = Path(data_dir).resolve()
    cmd = [
        binary,
        f"--config.file={Path(config_file).resolve()}",
        f"--storage.tsdb.path={data_dir / 'tsdb'}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
    return _spawn(
        "prometheus",
        cmd,
        run_dir=data_dir,
        log_file=log_file,
        ready_url=f"http://127.0.0.1:{port}/-/ready",
        detach=detach,
    )


# ------------------------------------------------------------------------ trace receivers


def _go() -> str:
    go = shutil.which("go") or _existing("/usr/local/go/bin/go")
    if go is None:
        raise RuntimeError("the Go toolchain is needed to build a trace receiver; none found")
    return go


def _go_env() -> dict[str, str]:
    # The local toolchain is new enough for both modules: never download another one.
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}


def ensure_jaeger(cache_dir: Path, version: str = JAEGER_MODULE_VERSION) -> Path:
    """Build Jaeger's all-in-one binary from its Go module once; cached in ``cache_dir``."""
    cache_dir = Path(cache_dir).resolve()
    binary = cache_dir / f"jaeger-{version}" / "jaeger"
    if binary.is_file():
        return binary
    with _file_lock(cache_dir / ".jaeger.lock"):
        if binary.is_file():
            return binary
        go, env = _go(), _go_env()
        res = _run([go, "mod", "download", "-json", f"{JAEGER_MODULE}@{version}"], env, 600)
        if res.returncode != 0:
            raise RuntimeError(f"go mod download {JAEGER_MODULE}@{version} failed:\n{res.stderr}")
        module_dir = json.loads(res.stdout)["Dir"]
        log.info("building Jaeger %s from %s (first time only: minutes)", version, module_dir)
        tmp = binary.with_name(f".jaeger.{os.getpid()}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        res = _run(
            [go, "build", "-trimpath", "-o", str(tmp), "./cmd/jaeger"],
            env,
            _GO_BUILD_TIMEOUT_S,
            cwd=Path(module_dir),
        )
        if res.returncode != 0:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise RuntimeError(f"go build of Jaeger {version} failed:\n{res.stderr[-4000:]}")
        tmp.replace(binary)
    return binary


def ensure_collector(cache_dir: Path, version: str = COLLECTOR_BUILDER_VERSION) -> Path:
    """Build an OpenTelemetry Collector (OTLP receiver + file exporter) with the official builder."""
    cache_dir = Path(cache_dir).resolve()
    out_dir = cache_dir / f"otelcol-{version}"
    binary = out_dir / "penguin12-otelcol"
    if binary.is_file():
        return binary
    with _file_lock(cache_dir / ".otelcol.lock"):
        if binary.is_file():
            return binary
        go = _go()
        env = {**_go_env(), "GOBIN": str(out_dir / "bin"), "GOFLAGS": "-mod=mod"}
        res = _run(
            [go, "install", f"go.opentelemetry.io/collector/cmd/builder@{version}"], env, 900
        )
        if res.returncode != 0:
            raise RuntimeError(f"go install of the collector builder failed:\n{res.stderr}")
        manifest = out_dir / "builder.json"
        manifest.write_text(
            json.dumps(
                {
                    "dist": {
                        "name": "penguin12-otelcol",
                        "description": "OTLP in, JSON lines out (Penguin12 local trace receiver)",
                        "output_path": str(out_dir / "build"),
                    },
                    "receivers": [
                        {"gomod": f"go.opentelemetry.io/collector/receiver/otlpreceiver {version}"}
                    ],
                    "exporters": [
                        {
                            "gomod": "github.com/open-telemetry/opentelemetry-collector-contrib/"
                            f"exporter/fileexporter {_COLLECTOR_CONTRIB_VERSION}"
                        }
                    ],
                },
                indent=2,
            )
        )
        # The builder's own `go mod tidy` also fetches the components' *test* dependencies, and
        # one of those (contrib's otlpencodingextension) is not served by the module proxy here:
        # generate the sources only, then tidy tolerantly (-e) and build the program itself.
        build_dir = out_dir / "build"
        res = _run(
            [
                str(out_dir / "bin" / "builder"),
                f"--config={manifest}",
                "--skip-compilation",
                "--skip-get-modules",
            ],
            env,
            600,
        )
        if res.returncode == 0:
            _run([go, "mod", "tidy", "-e"], env, _GO_BUILD_TIMEOUT_S, cwd=build_dir)
            res = _run(
                [go, "build", "-trimpath", "-o", "penguin12-otelcol", "."],
                {**env, "GOFLAGS": "-mod=mod"},
                _GO_BUILD_TIMEOUT_S,
                cwd=build_dir,
            )
        built = build_dir / "penguin12-otelcol"
        if res.returncode != 0 or not built.is_file():
            raise RuntimeError(
                f"building the collector failed:\n{(res.stdout + res.stderr)[-4000:]}"
            )
        built.replace(binary)
    return binary


@dataclass(frozen=True)
class Span:
    trace_id: str
    service: str
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class TraceReceiver:
    """A running OTLP/HTTP receiver and the way to read back what it received."""

    kind: str  # "jaeger" or "otelcol"
    otlp_endpoint: str  # what services get as PENGUIN12_OTLP_ENDPOINT
    ui_url: str | None
    process: ManagedProcess
    spans_file: Path | None = None

    def stop(self) -> None:
        self.process.stop()

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.process.wait_ready(timeout)

    def spans(self, services: Sequence[str]) -> list[Span]:
        """Every span received so far from ``services``."""
        if self.kind == "jaeger":
            return self._jaeger_spans(services)
        return self._file_spans(services)

    def _jaeger_spans(self, services: Sequence[str]) -> list[Span]:
        out: list[Span] = []
        for service in services:
            query = urllib.parse.urlencode({"service": service, "limit": 1000, "lookback": "1h"})
            try:
                body = _get_json(f"{self.ui_url}/api/traces?{query}")
            except urllib.error.HTTPError:
                continue  # Jaeger answers 4xx/5xx for a service it has not seen yet
            for trace in body.get("data") or []:
                processes = trace.get("processes", {})
                for span in trace.get("spans", []):
                    proc = processes.get(span.get("processID"), {})
                    if proc.get("serviceName") != service:
                        continue
                    attrs = {t["key"]: t.get("value") for t in span.get("tags", [])}
                    out.append(Span(span["traceID"], service, span["operationName"], attrs))
        return out

    def _file_spans(self, services: Sequence[str]) -> list[Span]:
        if self.spans_file is None or not self.spans_file.is_file():
            return []
        wanted = set(services)
        out: list[Span] = []
        for line in self.spans_file.read_text().splitlines():
            try:
                batch = json.loads(line)
            except ValueError:
                continue  # blank, or the line the exporter is writing right now
            for rs in batch.get("resourceSpans", []):
                rattrs = _otlp_attributes(rs.get("resource", {}).get("attributes", []))
                service = str(rattrs.get("service.name", ""))
                if service not in wanted:
                    continue
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        attrs = _otlp_attributes(span.get("attributes", []))
                        out.append(Span(span["traceId"], service, span["name"], attrs))
        return out


def _otlp_attributes(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for item in items:
        value = item.get("value", {})
        attrs[item["key"]] = next(iter(value.values()), None) if value else None
    return attrs


@dataclass(frozen=True)
class ObservabilityPorts:
    """Local ports; the defaults are the host ports docker-compose.yml publishes."""

    prometheus: int = int(os.environ.get("PENGUIN12_LOCAL_PROMETHEUS_PORT", "9090"))
    otlp_http: int = int(os.environ.get("PENGUIN12_LOCAL_OTLP_PORT", "4318"))
    jaeger_ui: int = int(os.environ.get("PENGUIN12_LOCAL_JAEGER_UI_PORT", "16686"))
    jaeger_grpc: int = int(os.environ.get("PENGUIN12_LOCAL_JAEGER_GRPC_PORT", "16685"))
    health: int = int(os.environ.get("PENGUIN12_LOCAL_TRACES_HEALTH_PORT", "13133"))


def _jaeger_config(ports: ObservabilityPorts) -> dict[str, Any]:
    """All-in-one with memory storage, listening only on the given loopback ports."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
        "extensions": {
            "healthcheckv2": {
                "use_v2": True,
                "http": {"endpoint": f"127.0.0.1:{ports.health}"},
            },
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                # Jaeger would trace its own queries to 127.0.0.1:4317; nothing listens there.
                "enable_tracing": False,
                "http": {"endpoint": f"127.0.0.1:{ports.jaeger_ui}"},
                "grpc": {"endpoint": f"127.0.0.1:{ports.jaeger_grpc}"},
            },
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
        },
        "receivers": {
            "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ports.otlp_http}"}}}
        },
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def _collector_config(ports: ObservabilityPorts, spans_file: Path) -> dict[str, Any]:
    return {
        "receivers": {
            "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ports.otlp_http}"}}}
        },
        "exporters": {"file": {"path": str(spans_file), "format": "json"}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
    }


def start_trace_receiver(
    *,
    cache_dir: Path,
    data_dir: Path,
    log_file: Path,
    ports: ObservabilityPorts,
    detach: bool = False,
    prefer: str = "jaeger",
) -> TraceReceiver:
    """Start Jaeger (or, failing that, the OTel Collector) receiving OTLP/HTTP on ``ports``."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    otlp = f"http://127.0.0.1:{ports.otlp_http}"
    errors = []
    for kind in (prefer, *(k for k in ("jaeger", "otelcol") if k != prefer)):
        try:
            if kind == "jaeger":
                binary = ensure_jaeger(cache_dir)
                config = data_dir / "jaeger.json"
                config.write_text(json.dumps(_jaeger_config(ports), indent=2))
                proc = _spawn(
                    "jaeger",
                    [str(binary), f"--config={config}"],
                    run_dir=data_dir,
                    log_file=log_file,
                    ready_url=f"http://127.0.0.1:{ports.jaeger_ui}/api/services",
                    detach=detach,
                )
                return TraceReceiver("jaeger", otlp, f"http://127.0.0.1:{ports.jaeger_ui}", proc)
            binary = ensure_collector(cache_dir)
            spans_file = data_dir / "spans.jsonl"
            config = data_dir / "otelcol.json"
            config.write_text(json.dumps(_collector_config(ports, spans_file), indent=2))
            proc = _spawn(
                "otelcol",
                [str(binary), f"--config={config}"],
                run_dir=data_dir,
                log_file=log_file,
                ready_url=f"http://127.0.0.1:{ports.otlp_http}/v1/traces",
                detach=detach,
            )
            proc.any_status = True  # the OTLP endpoint answers a GET with 405: it is up

            return TraceReceiver("otelcol", otlp, None, proc, spans_file)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log.warning("trace receiver %s unavailable: %s", kind, exc)
            errors.append(f"{kind}: {exc}")
    raise RuntimeError("no OTLP trace receiver could be started:\n" + "\n".join(errors))


# ----------------------------------------------------------------------- `make run` helpers


@dataclass
class LocalObservability:
    env: dict[str, str]
    urls: dict[str, str]
    started: list[str]


def start_local_observability(
    *,
    run_dir: Path,
    cache_dir: Path,
    logs_dir: Path,
    targets: Mapping[str, Sequence[str]],
    ports: ObservabilityPorts | None = None,
) -> LocalObservability:
    """For ``make run``: detached Prometheus and trace receiver, unless already running.

    Returns the environment the services need (``PENGUIN12_OTLP_ENDPOINT``) and the URLs to
    print. A part that cannot be had (no apt-get, no Go) is skipped with a warning.
    """
    ports = ports or ObservabilityPorts()
    env: dict[str, str] = {}
    urls: dict[str, str] = {}
    started: list[str] = []
    base = run_dir / "data"

    traces_dir = base / "traces"
    if _pid_file_alive(traces_dir / _PID_FILE):
        env["PENGUIN12_OTLP_ENDPOINT"] = f"http://127.0.0.1:{ports.otlp_http}"
        urls["Traces"] = f"http://127.0.0.1:{ports.jaeger_ui}"
    else:
        try:
            receiver = start_trace_receiver(
                cache_dir=cache_dir / "observability",
                data_dir=traces_dir,
                log_file=logs_dir / "traces.log",
                ports=ports,
                detach=True,
            )
            receiver.wait_ready(60)
            env["PENGUIN12_OTLP_ENDPOINT"] = receiver.otlp_endpoint
            urls["Traces"] = receiver.ui_url or f"{receiver.spans_file} (JSON lines)"
            started.append(receiver.kind)
        except (RuntimeError, OSError, TimeoutError) as exc:
            log.warning("tracing stays off: %s", exc)

    prom_dir = base / "prometheus"
    if not _pid_file_alive(prom_dir / _PID_FILE):
        try:
            config = local_prometheus_config(
                {**targets, "prometheus": [f"127.0.0.1:{ports.prometheus}"]}
            )
            config_file = write_prometheus_config(prom_dir / "prometheus.yml", config)
            prometheus = start_prometheus(
                config_file=config_file,
                data_dir=prom_dir,
                log_file=logs_dir / "prometheus.log",
                port=ports.prometheus,
                detach=True,
            )
            prometheus.wait_ready(60)
            started.append("prometheus")
        except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
            log.warning("Prometheus not started: %s", exc)
            return LocalObservability(env, urls, started)
    urls["Prometheus"] = f"http://127.0.0.1:{ports.prometheus}"
    return LocalObservability(env, urls, started)


def stop_local_observability(run_dir: Path) -> list[str]:
    """Stop what :func:`start_local_observability` started; returns the names stopped."""
    stopped = []
    for name in ("prometheus", "traces"):
        if stop_pid_file(run_dir / "data" / name / _PID_FILE, timeout=20):
            stopped.append(name)
    return stopped


def local_observability_status(run_dir: Path) -> list[tuple[str, bool]]:
    return [
        (name, _pid_file_alive(run_dir / "data" / name / _PID_FILE))
        for name in ("prometheus", "traces")
    ]


# ----------------------------------------------------------------------------------- misc


def _pid_file_alive(pid_file: Path) -> bool:
    try:
        return pid_alive(int(pid_file.read_text().strip()))
    except (OSError, ValueError):
        return False


def _existing(path: str) -> str | None:
    return path if os.access(path, os.X_OK) else None


def _run(
    cmd: Sequence[str], env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(cmd),
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(list(cmd), 124, "", f"timed out after {exc.timeout}s")
