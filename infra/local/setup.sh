#!/usr/bin/env bash
# Idempotent set-up for `make run` / `make test` on a fresh machine: every step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  echo "setup: installing uv"
  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
fi
UV=$(command -v uv 2>/dev/null || echo "$HOME/.local/bin/uv")

# The lock file pins every Python package; the uv cache keeps torch from downloading twice.
"$UV" sync --frozen --all-packages --quiet

if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server (Debian package)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# Kafka's jars come from Maven Central once, into .cache/kafka.
"$UV" run --frozen python -c "
from pathlib import Path
from penguin12_devstack.kafka import ensure_kafka_jars
print('setup: kafka jars in', ensure_kafka_jars(Path('.cache/kafka')))
"
