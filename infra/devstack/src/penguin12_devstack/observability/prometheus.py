"""A real Prometheus for the local run and the tests, scraping what docker-compose.yml's does.

The binary is Debian's package (``/usr/bin/prometheus``; installed with apt-get when
missing). Its config is derived from the Compose one (``prometheus.yml`` at the repository
root: same jobs, same paths), with each job's DNS discovery replaced by local ``127.0.0.1``
ports (:func:`local_prometheus_config`), so the local run never scrapes something the
Compose deployment does not.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from penguin12_devstack.install import ensure_debian_program
from penguin12_devstack.process import HttpProcess

__all__ = [
    "PID_FILE",
    "ensure_prometheus",
    "local_prometheus_config",
    "start_prometheus",
    "write_prometheus_config",
]

# infra/devstack/src/penguin12_devstack/observability/prometheus.py -> the repository root
REPO_ROOT = Path(__file__).resolve().parents[5]
COMPOSE_PROMETHEUS_CONFIG = REPO_ROOT / "prometheus.yml"
PID_FILE = "process.pid"


def ensure_prometheus() -> str:
    """The path of ``prometheus``, installing Debian's package with apt-get if it is missing."""
    return ensure_debian_program("prometheus", "prometheus", after_install=_disable_system_unit)


def _disable_system_unit() -> None:
    # Debian's package starts a system-wide Prometheus on :9090 where services may start.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["systemctl", "disable", "--now", "prometheus"], capture_output=True, timeout=30
        )


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
) -> HttpProcess:
    """Run Prometheus on 127.0.0.1:``port`` with ``config_file``; TSDB and pid in ``data_dir``."""
    data_dir = Path(data_dir).resolve()
    cmd = [
        ensure_prometheus(),
        f"--config.file={Path(config_file).resolve()}",
        f"--storage.tsdb.path={data_dir / 'tsdb'}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
    return HttpProcess.start(
        "prometheus",
        cmd,
        run_dir=data_dir,
        pid_name=PID_FILE,
        log_file=log_file,
        detach=detach,
        health_url=f"http://127.0.0.1:{port}/-/ready",
    )
