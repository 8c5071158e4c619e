#!/usr/bin/env bash
# Idempotent set-up of what the test suite needs beyond `make setup`: Chromium for the browser tests
# (Debian package), Prometheus (Debian package) and Jaeger (built once from its Go module into
# .cache/observability) for the observability tests. Each step is skipped when already done.
#
# Under CI=true a step that fails fails the set-up: the tests would otherwise skip (browser) or fall
# back to the OTel Collector (Jaeger), and a green run would hide it. Elsewhere a failure is a
# warning; the affected tests then say why they skipped in pytest's summary.
set -uo pipefail
cd "$(dirname "$0")/../.."
UV=$(command -v uv 2>/dev/null || echo "$HOME/.local/bin/uv")
failed=0

if ! bash infra/local/setup-browser.sh >/dev/null; then
  echo "setup-test: Chromium could not be installed; the browser tests will not run" >&2
  failed=1
fi

if ! "$UV" run --frozen python -c "
import logging, sys
from pathlib import Path
from penguin12_devstack.observability import ensure_jaeger, ensure_prometheus
logging.basicConfig(level=logging.INFO, format='setup-test: %(message)s')
try:
    ensure_prometheus()
    ensure_jaeger(Path('.cache/observability'))
except Exception as exc:
    sys.exit(f'setup-test: {exc}')
"; then
  echo "setup-test: Prometheus or Jaeger could not be installed; the observability tests will fail or fall back" >&2
  failed=1
fi

if [ "$failed" -ne 0 ] && [ "${CI:-}" = "true" ]; then
  echo "setup-test: CI=true and a test dependency is missing: failing rather than skipping" >&2
  exit 1
fi
exit 0
