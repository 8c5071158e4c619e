"""Provenance settings (environment variables prefixed ``PENGUIN12_``): read once, in `main`."""

from __future__ import annotations

from penguin12.settings import WebhookSettings
from penguin12.web import ApiSettings


class ProvenanceSettings(ApiSettings, WebhookSettings):
    service_name: str = "provenance"
    port: int = 8001
    consumer_group: str = "provenance"
    # A job with no final state this long after submission is FAILED with a timeout error.
    job_deadline_s: float = 3600.0
    # How often to look for overdue jobs and for lost state (then rebuilt from the status topic).
    maintenance_interval_s: float = 5.0
