"""Settings from the environment, read once at start (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. Unset URLs mean: start embedded servers."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    state_dir: Path = Field(default=Path(".state"), alias="ACCOUNTGRAPH_STATE_DIR")
    operator_token: str | None = Field(default=None, alias="ACCOUNTGRAPH_OPERATOR_TOKEN")
    graphiql_enabled: bool = Field(default=True, alias="ACCOUNTGRAPH_GRAPHIQL")
    db_pool_size: int = Field(default=10, alias="ACCOUNTGRAPH_DB_POOL_SIZE", ge=1, le=200)
    outbox_poll_s: float = Field(default=1.0, alias="ACCOUNTGRAPH_OUTBOX_POLL_S", gt=0)
    outbox_resend_after_s: float = Field(
        default=60.0, alias="ACCOUNTGRAPH_OUTBOX_RESEND_AFTER_S", gt=0
    )
    queue_name: str = Field(default="accountgraph:queue", alias="ACCOUNTGRAPH_QUEUE")

    @property
    def embedded(self) -> bool:
        return self.database_url is None and self.redis_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
