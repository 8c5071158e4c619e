"""The DLQ tool's one settings class: the pipeline's (``PENGUIN12_*``) plus its replay log."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from penguin12.settings import CommonSettings


class DlqSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    service_name: str = "dlq-replayer"
    dlq_replayer_group: str = "penguin12-dlq-replayer"
