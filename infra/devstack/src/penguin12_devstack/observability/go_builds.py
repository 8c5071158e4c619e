"""The local trace receivers, built once from their Go modules and cached under ``.cache/``.

- **Jaeger** v2 (the version ``docker-compose.yml`` runs). ``go install
  github.com/jaegertracing/jaeger/cmd/jaeger@<version>`` is refused by Go because Jaeger's
  go.mod has a ``replace`` directive, so the module is fetched with ``go mod download`` and
  ``go build ./cmd/jaeger`` runs inside it (where the replace applies).
- The **OpenTelemetry Collector**, the fallback when Jaeger cannot be built: the official
  builder (``go install go.opentelemetry.io/collector/cmd/builder@<version>``) assembles one
  with the OTLP receiver and the file exporter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from penguin12_devstack.install import executable, file_lock, run_tool

__all__ = [
    "COLLECTOR_BUILDER_VERSION",
    "JAEGER_MODULE",
    "JAEGER_MODULE_VERSION",
    "JAEGER_RELEASE",
    "ensure_collector",
    "ensure_jaeger",
]

log = logging.getLogger("penguin12.devstack.observability")

# Jaeger tags every release twice: v1.76.0 is the same commit as v2.13.0, the image tag that
# docker-compose.yml pins (jaegertracing/jaeger:2.13.0). The Go module only has the v1.x tags.
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_MODULE_VERSION = "v1.76.0"
JAEGER_RELEASE = "2.13.0"
# Fallback receiver: the OpenTelemetry Collector builder and the components it assembles.
COLLECTOR_BUILDER_VERSION = "v0.140.0"
_COLLECTOR_CONTRIB_VERSION = "v0.140.0"

_GO_BUILD_TIMEOUT_S = 1800.0


def ensure_jaeger(cache_dir: Path, version: str = JAEGER_MODULE_VERSION) -> Path:
    """Build Jaeger's all-in-one binary from its Go module once; cached in ``cache_dir``."""
    cache_dir = Path(cache_dir).resolve()
    binary = cache_dir / f"jaeger-{version}" / "jaeger"

    def build() -> None:
        go, env = _go(), _go_env()
        res = run_tool([go, "mod", "download", "-json", f"{JAEGER_MODULE}@{version}"], env, 600)
        if res.returncode != 0:
            raise RuntimeError(f"go mod download {JAEGER_MODULE}@{version} failed:\n{res.stderr}")
        module_dir = json.loads(res.stdout)["Dir"]
        log.info("building Jaeger %s from %s (first time only: minutes)", version, module_dir)
        tmp = binary.with_name(f".jaeger.{os.getpid()}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        res = run_tool(
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

    return _build_once(binary, cache_dir / ".jaeger.lock", build)


def ensure_collector(cache_dir: Path, version: str = COLLECTOR_BUILDER_VERSION) -> Path:
    """Build an OpenTelemetry Collector (OTLP receiver + file exporter) with the official builder."""
    cache_dir = Path(cache_dir).resolve()
    out_dir = cache_dir / f"otelcol-{version}"
    binary = out_dir / "penguin12-otelcol"

    def build() -> None:
        go = _go()
        env = {**_go_env(), "GOBIN": str(out_dir / "bin"), "GOFLAGS": "-mod=mod"}
        res = run_tool(
            [go, "install", f"go.opentelemetry.io/collector/cmd/builder@{version}"], env, 900
        )
        if res.returncode != 0:
            raise RuntimeError(f"go install of the collector builder failed:\n{res.stderr}")
        manifest = out_dir / "builder.json"
        manifest.write_text(json.dumps(_collector_manifest(out_dir, version), indent=2))
        # The builder's own `go mod tidy` also fetches the components' *test* dependencies, and
        # one of those (contrib's otlpencodingextension) is not served by the module proxy here:
        # generate the sources only, then tidy tolerantly (-e) and build the program itself.
        build_dir = out_dir / "build"
        res = run_tool(
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
            run_tool([go, "mod", "tidy", "-e"], env, _GO_BUILD_TIMEOUT_S, cwd=build_dir)
            res = run_tool(
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

    return _build_once(binary, cache_dir / ".otelcol.lock", build)


def _collector_manifest(out_dir: Path, version: str) -> dict[str, object]:
    return {
        "dist": {
            "name": "penguin12-otelcol",
            "description": "OTLP in, JSON lines out (Penguin12 local trace receiver)",
            "output_path": str(out_dir / "build"),
        },
        "receivers": [{"gomod": f"go.opentelemetry.io/collector/receiver/otlpreceiver {version}"}],
        "exporters": [
            {
                "gomod": "github.com/open-telemetry/opentelemetry-collector-contrib/"
                f"exporter/fileexporter {_COLLECTOR_CONTRIB_VERSION}"
            }
        ],
    }


def _build_once(binary: Path, lock: Path, build: Callable[[], None]) -> Path:
    """``binary``, running ``build`` first unless it exists; one build at a time across processes."""
    if binary.is_file():
        return binary
    with file_lock(lock):
        if not binary.is_file():  # another process may have built it while we waited
            build()
    return binary


def _go() -> str:
    go = shutil.which("go") or executable("/usr/local/go/bin/go")
    if go is None:
        raise RuntimeError("the Go toolchain is needed to build a trace receiver; none found")
    return go


def _go_env() -> dict[str, str]:
    # The local toolchain is new enough for both modules: never download another one.
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
