"""Provenance settings (environment variables prefixed ``PENGUIN12_``)."""

from __future__ import annotations

from penguin12.web import ApiSettings


class ProvenanceSettings(ApiSettings):
    service_name: str = "provenance"
    port: int = 8001
    consumer_group: str = "provenance"
