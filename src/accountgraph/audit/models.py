"""The audit log's one table: a row per mutation, never edited (a trigger refuses UPDATE
and DELETE, except the retention purge's DELETE of rows older than the retention)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, String, Text, func
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from accountgraph.db import table_of

PRINCIPAL_KINDS = ("OPERATOR", "ACCOUNT_USER")
OUTCOMES = ("OK", "REFUSED", "ERROR")
# The session setting the purge sets (SET LOCAL) to the retention in days; the trigger
# lets a DELETE through only for rows older than that, and refuses every UPDATE.
PURGE_SETTING = "accountgraph.audit_retention_days"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AuditEntryRow(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_in("principal_kind", PRINCIPAL_KINDS), name="principal_kind"),
        CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),
        CheckConstraint(
            "principal_kind = 'OPERATOR' OR account_id IS NOT NULL", name="account_user_account"
        ),
        # Newest first per acting account (a master's and a member's pages) ...
        Index("ix_audit_log_account", "account_id", "id"),
        # ... by time (since/until, and the purge).
        Index("ix_audit_log_at", "at"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    principal_kind: str = Field(sa_type=String(20))
    # The acting account (its users' token); NULL for operators.
    account_id: int | None = Field(default=None, sa_type=BigInteger)
    # The first 16 hex digits of the token's SHA-256, i.e. of its api_tokens.token_hash:
    # which token, never the token. NULL for the ACCOUNTGRAPH_OPERATOR_TOKEN env token.
    token_id: str | None = Field(default=None, sa_type=String(16))
    token_name: str | None = Field(default=None, sa_type=String(200))
    operation_name: str | None = Field(default=None, sa_type=String(200))
    field: str = Field(sa_type=String(100))
    outcome: str = Field(sa_type=String(10))
    error_codes: list[str] = Field(
        sa_type=ARRAY(Text), sa_column_kwargs={"server_default": sql_text("'{}'")}
    )
    input: dict[str, Any] = Field(sa_type=JSONB)
    object_ids: list[str] = Field(
        sa_type=ARRAY(Text), sa_column_kwargs={"server_default": sql_text("'{}'")}
    )
    request_id: str = Field(sa_type=String(128))
    client_address: str | None = Field(default=None, sa_type=String(100))


audit_log = table_of(AuditEntryRow)
