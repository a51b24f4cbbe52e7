"""Settings from the environment, read once at start (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    # How long a gateway keeps a token's principal (accounts/principals.py); 0: off.
    principal_cache_s: float = Field(
        default=5.0, alias="ACCOUNTGRAPH_PRINCIPAL_CACHE_S", ge=0, le=300
    )
    # How long a command waits for a configured PostgreSQL or Redis to answer at start
    # (servers still booting beside it) before it names the setting and exits 2.
    startup_wait_s: float = Field(default=15.0, alias="ACCOUNTGRAPH_STARTUP_WAIT_S", ge=0, le=600)
    db_pool_size: int = Field(default=10, alias="ACCOUNTGRAPH_DB_POOL_SIZE", ge=1, le=200)
    outbox_poll_s: float = Field(default=1.0, alias="ACCOUNTGRAPH_OUTBOX_POLL_S", gt=0)
    outbox_resend_after_s: float = Field(
        default=60.0, alias="ACCOUNTGRAPH_OUTBOX_RESEND_AFTER_S", gt=0
    )
    queue_name: str = Field(default="accountgraph:queue", alias="ACCOUNTGRAPH_QUEUE")
    cors_origins_csv: str = Field(default="", alias="ACCOUNTGRAPH_CORS_ORIGINS")
    apq_ttl_s: int = Field(default=86_400, alias="ACCOUNTGRAPH_APQ_TTL_S", ge=1)
    apq_max_entries: int = Field(default=2_000, alias="ACCOUNTGRAPH_APQ_MAX_ENTRIES", ge=0)
    # Invoice document links are signed with this; unset: a random key per process (so
    # with N gateways behind a load balancer, set it, the same on every one).
    document_secret: str | None = Field(default=None, alias="ACCOUNTGRAPH_DOCUMENT_SECRET")
    document_url_ttl_s: int = Field(
        default=900, alias="ACCOUNTGRAPH_DOCUMENT_URL_TTL_S", ge=10, le=86_400
    )
    # Limits of the public API (api/limits.py; README "Limits").
    max_query_cost: int = Field(default=50_000, alias="ACCOUNTGRAPH_MAX_QUERY_COST", ge=1)
    # A token bucket per principal in Redis; 0 turns rate limiting off.
    rate_limit_cost_per_minute: int = Field(
        default=1_000_000, alias="ACCOUNTGRAPH_RATE_LIMIT_COST_PER_MINUTE", ge=0
    )
    introspection_enabled: bool = Field(default=True, alias="ACCOUNTGRAPH_INTROSPECTION")
    # Tree reads answered by one compiled SQL statement per entry (api/compiler.py); off,
    # every field is completed by its resolver (the same answer, slower).
    read_compiler: bool = Field(default=True, alias="ACCOUNTGRAPH_READ_COMPILER")
    max_body_bytes: int = Field(default=1_048_576, alias="ACCOUNTGRAPH_MAX_BODY_BYTES", ge=1_024)
    body_timeout_s: float = Field(default=10.0, alias="ACCOUNTGRAPH_BODY_TIMEOUT_S", gt=0)
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated
    # addresses or networks, "*" for any); none by default, so a client cannot pick the
    # address its rate limit is counted under.
    trusted_proxies_csv: str = Field(default="", alias="ACCOUNTGRAPH_TRUSTED_PROXIES")
    # Persisted queries registered by clients without a token (off: they run unstored).
    apq_anonymous_register: bool = Field(default=False, alias="ACCOUNTGRAPH_APQ_ANONYMOUS_REGISTER")
    # Live subscriptions (alerts/fanout.py): per principal across this gateway process, and
    # per WebSocket; over either: TOO_MANY_SUBSCRIPTIONS.
    max_subscriptions_per_principal: int = Field(
        default=20, alias="ACCOUNTGRAPH_MAX_SUBSCRIPTIONS_PER_PRINCIPAL", ge=1
    )
    max_subscriptions_per_connection: int = Field(
        default=10, alias="ACCOUNTGRAPH_MAX_SUBSCRIPTIONS_PER_CONNECTION", ge=1
    )

    # A4: notification channels.
    smtp_host: str | None = Field(default=None, alias="ACCOUNTGRAPH_SMTP_HOST")
    smtp_port: int = Field(default=25, alias="ACCOUNTGRAPH_SMTP_PORT")
    smtp_user: str | None = Field(default=None, alias="ACCOUNTGRAPH_SMTP_USER")
    smtp_password: str | None = Field(default=None, alias="ACCOUNTGRAPH_SMTP_PASSWORD")
    smtp_starttls: bool = Field(default=False, alias="ACCOUNTGRAPH_SMTP_STARTTLS")
    smtp_from: str = Field(default="accountgraph@localhost", alias="ACCOUNTGRAPH_SMTP_FROM")
    webhook_secret: str | None = Field(default=None, alias="ACCOUNTGRAPH_WEBHOOK_SECRET")
    # Security finding 4: webhooks go to https URLs of public addresses only, unless these.
    webhook_allow_http: bool = Field(default=False, alias="ACCOUNTGRAPH_WEBHOOK_ALLOW_HTTP")
    webhook_allow_private: bool = Field(default=False, alias="ACCOUNTGRAPH_WEBHOOK_ALLOW_PRIVATE")
    sms_gateway_url: str | None = Field(default=None, alias="ACCOUNTGRAPH_SMS_GATEWAY_URL")
    delivery_attempts: int = Field(default=5, alias="ACCOUNTGRAPH_DELIVERY_ATTEMPTS", ge=1, le=20)
    delivery_backoff_s: float = Field(default=30.0, alias="ACCOUNTGRAPH_DELIVERY_BACKOFF_S", gt=0)
    alert_sweep_minutes: int = Field(
        default=5, alias="ACCOUNTGRAPH_ALERT_SWEEP_MINUTES", ge=1, le=60
    )
    # Issue 15: audit rows are kept this long, then purged daily (at least 30 days: the
    # append-only trigger refuses to delete anything younger).
    audit_retention_days: int = Field(
        default=400, alias="ACCOUNTGRAPH_AUDIT_RETENTION_DAYS", ge=30, le=36_500
    )
    # Issue 15: on SIGTERM a gateway finishes its started requests and a worker its running
    # jobs for up to this long; then what is left is cancelled (jobs go back to the queue).
    shutdown_grace_s: int = Field(default=20, alias="ACCOUNTGRAPH_SHUTDOWN_GRACE_S", ge=0, le=3_600)
    # Issue 15: /readyz answers 503 while the oldest outbox row due to be sent has waited
    # longer than this (the relay or the workers are stuck); 0: not checked.
    ready_max_outbox_age_s: float = Field(
        default=300.0, alias="ACCOUNTGRAPH_READY_MAX_OUTBOX_AGE_S", ge=0
    )
    # Traces over OTLP/HTTP (tracing.py), the standard OpenTelemetry variable; unset: off.
    otlp_endpoint: str | None = Field(default=None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    # `accountgraph worker` serves its own /metrics (jobs, deliveries) on this port; unset:
    # none (the embedded default's in-process worker counts into the gateway's /metrics).
    worker_metrics_port: int | None = Field(
        default=None, alias="ACCOUNTGRAPH_WORKER_METRICS_PORT", ge=1, le=65_535
    )
    # Log lines: "json" (one object a line) or "text"; unset: text on a terminal, else JSON.
    log_format: Literal["json", "text"] | None = Field(
        default=None, alias="ACCOUNTGRAPH_LOG_FORMAT"
    )

    @property
    def embedded(self) -> bool:
        return self.database_url is None and self.redis_url is None

    @property
    def trusted_proxies(self) -> list[str]:
        return [peer.strip() for peer in self.trusted_proxies_csv.split(",") if peer.strip()]

    @property
    def cors_origins(self) -> list[str]:
        """Browser origins allowed to call the API (``https://console.example.com``; ``*``
        for any), from the comma-separated ACCOUNTGRAPH_CORS_ORIGINS. Empty: none."""
        return [
            origin.strip().rstrip("/")
            for origin in self.cors_origins_csv.split(",")
            if origin.strip()
        ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
