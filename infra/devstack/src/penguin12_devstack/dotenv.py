"""`make env`: the `.env` that `docker compose up` reads its secrets from, with random values.

Compose refuses to start without them (``${VAR:?...}`` in docker-compose.yml), so a deployment
never runs with a default password, no API key or unsigned webhooks. An existing file is kept
(its secrets may be in use) unless ``--force``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# The variables docker-compose.yml requires, and how to make each.
SECRETS = {
    "PENGUIN12_API_KEYS": lambda: "p12_" + secrets.token_urlsafe(32),
    "PENGUIN12_WEBHOOK_SECRET": lambda: secrets.token_urlsafe(48),
    "GRAFANA_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(24),
}


def render() -> str:
    lines = [
        "# Secrets for `docker compose up`, written by `make env`. Keep this file private.",
        "# PENGUIN12_API_KEYS may list several comma-separated keys (one per client).",
    ]
    lines += [f"{name}={make()}" for name, make in SECRETS.items()]
    return "\n".join(lines) + "\n"


def write_env(path: Path, force: bool = False) -> bool:
    """Write ``path`` (mode 0600) unless it exists and ``force`` is off; True if written."""
    if path.exists() and not force:
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(render())
    os.chmod(path, 0o600)
    return True
