#!/usr/bin/env bash
# Install one workspace package into UV_PROJECT_ENVIRONMENT (the image's /app/.venv) exactly as
# the root uv.lock pins it.
#
#   install-venv.sh deps PACKAGE      third-party dependencies only (before the sources are copied,
#                                     so this slow layer is rebuilt only when the lock changes)
#   install-venv.sh workspace PACKAGE the workspace packages themselves, non-editable
#
# One deliberate exception to "exactly the lock": the lock pins PyPI's torch/torchvision, whose
# Linux wheels pull in ~3 GB of CUDA libraries that a CPU service never uses. So (TORCH_VARIANT=cpu,
# the default) torch, torchvision, triton and every nvidia-*/cuda-* package are left out of
# `uv sync`, and the *same versions'* CPU builds (`torch==<locked>+cpu`) come from TORCH_INDEX_URL
# with --no-deps (their other dependencies were installed from the lock). torch is never a
# different release than uv.lock says. TORCH_VARIANT=lock keeps the lock's CUDA wheels (GPU hosts).
# Packages without torch (preprocessor, provenance) are simply synced from the lock.
set -euo pipefail

step=${1:?usage: install-venv.sh deps|workspace PACKAGE}
package=${2:-}
if [ -z "${package}" ]; then
    echo "install-venv.sh: no package; build with --build-arg PACKAGE=penguin12-<service>" >&2
    exit 2
fi
variant=${TORCH_VARIANT:-cpu}
venv=${UV_PROJECT_ENVIRONMENT:-/app/.venv}
locked=/tmp/locked-${package}.txt
skip=/tmp/skip-${package}.txt

case "${step}" in
deps)
    uv export --frozen --no-dev --package "${package}" --no-emit-workspace \
        --no-hashes --no-header --no-annotate --output-file "${locked}"
    : > "${skip}"
    if [ "${variant}" != "lock" ]; then
        { grep -E '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)[ ;=[]' "${locked}" || true; } \
            | sed -E 's/[ ;=[].*//' | sort -u > "${skip}"
    fi
    sed 's/^/--no-install-package=/' "${skip}" \
        | xargs uv sync --frozen --no-dev --no-editable --no-install-workspace --package "${package}"
    mapfile -t torch < <({ grep -E '^(torch|torchvision)==' "${locked}" || true; } | sed -E "s/ *;.*//; s/\$/+${variant}/")
    if [ "${variant}" != "lock" ] && [ "${#torch[@]}" -gt 0 ]; then
        uv pip install --python "${venv}/bin/python" --no-deps \
            --index-url "${TORCH_INDEX_URL:?}" "${torch[@]}"
        "${venv}/bin/python" -c "import torch; print('torch', torch.__version__)"
    fi
    ;;
workspace)
    sed 's/^/--no-install-package=/' "${skip}" \
        | xargs uv sync --frozen --no-dev --no-editable --inexact --package "${package}"
    ;;
*)
    echo "install-venv.sh: unknown step ${step} (deps or workspace)" >&2
    exit 2
    ;;
esac
