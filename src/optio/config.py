"""One typed settings object, read from OPTIO_* environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPTIO_", env_file=None, extra="ignore")

    data_dir: Path = Field(default=Path("./.optio"), description="Where the database, worktrees and logs live")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in data_dir")
    host: str = "127.0.0.1"
    port: int = 8470
    url: str | None = Field(default=None, description="API base URL the CLI talks to")

    max_concurrent_runs: int = Field(default=8, ge=1, description="Global cap on running agent processes")
    max_concurrent_per_repo: int = Field(default=4, ge=1)
    workers: int = Field(default=4, ge=1, description="Reconcile worker threads")
    stall_threshold_s: float = Field(default=900.0, gt=0, description="No output for this long = stalled")
    resync_interval_s: float = Field(default=300.0, gt=0)
    watch_interval_s: float = Field(default=30.0, gt=0, description="PR watcher poll interval")
    max_auto_resumes: int = Field(default=10, ge=0)
    agent_timeout_s: float = Field(default=3600.0, gt=0, description="Default wall-clock limit per agent run")
    queue_lease_s: float = Field(default=60.0, gt=0)
    log_level: str = "info"

    @cached_property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'optio.db'}"

    @property
    def api_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"
