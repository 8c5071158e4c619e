"""Where chaos points (the local stack on 127.0.0.1) and how hard it pushes (quick or full)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "chaos" / "results"
PREPROCESSOR = os.environ.get("PENGUIN12_CHAOS_PREPROCESSOR_URL", "http://127.0.0.1:8000")
PROVENANCE = os.environ.get("PENGUIN12_CHAOS_PROVENANCE_URL", "http://127.0.0.1:8001")
API_KEY = os.environ.get("PENGUIN12_CHAOS_API_KEY", "")


def api_headers() -> dict[str, str]:
    """What every request carries: the API key, where the stack wants one."""
    return {"X-API-Key": API_KEY} if API_KEY else {}


@dataclass(frozen=True)
class Profile:
    full: bool
    clients: int  # concurrent closed-loop submitters
    rate_per_client: float  # at most this many submissions per second per client
    warmup_s: float  # load before the fault
    fault_s: float  # how long the fault lasts (down, stopped)
    after_s: float  # load after recovery
    recovery_deadline_s: float  # after load stops, every accepted job must be terminal by then
    max_submissions: int  # per scenario, a hard bound on requests
    kill_signal: signal.Signals  # for Kafka and Redis

    @staticmethod
    def from_env() -> Profile:
        if os.environ.get("CHAOS_FULL", "") not in ("", "0"):
            return Profile(True, 4, 2.0, 15, 30, 20, 300, 3000, signal.SIGKILL)
        return Profile(False, 2, 1.5, 4, 8, 4, 120, 1000, signal.SIGTERM)
