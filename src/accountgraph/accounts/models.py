"""H1-H5, P1: the tables of the account graph.

Declared as SQLModel table models, so a row has a type; the read path still works on
rows, not entities: the services query the Core tables (``accounts``, ``links``, ...,
each model's ``__table__``). The constraints below state what a row can state, so the
database refuses a broken graph even if a service were wrong.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from accountgraph.db import table_of

ACCOUNT_STATUSES = ("ACTIVE", "SUSPENDED", "CLOSED")
LINK_TYPES = ("TRUSTEESHIP", "FINANCIAL")
LINK_STATUSES = ("INVITED", "ACTIVE", "DECLINED", "DISSOCIATED")
LINK_PERMISSIONS = ("SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(_in("status", ACCOUNT_STATUSES), name="status"),
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        Index("ix_accounts_lower_name", text("lower(name)")),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    name: str = Field(sa_type=String(200))
    display_name: str = Field(sa_type=String(200))
    branch: str | None = Field(default=None, sa_type=String(200))
    terms: str | None = Field(default=None, sa_type=String(50))
    salesperson: str | None = Field(default=None, sa_type=String(200))
    status: str = Field(sa_type=String(20), sa_column_kwargs={"server_default": "ACTIVE"})
    cost_center_enabled: bool = Field(
        sa_type=Boolean, sa_column_kwargs={"server_default": text("false")}
    )
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class Link(SQLModel, table=True):
    __tablename__ = "links"
    __table_args__ = (
        CheckConstraint(_in("type", LINK_TYPES), name="type"),
        CheckConstraint(_in("status", LINK_STATUSES), name="status"),
        CheckConstraint("master_id <> member_id", name="not_self"),
        CheckConstraint(
            "permissions <@ ARRAY['SYNC_CREDIT_CONTROL','VIEW_FINANCE','MANAGE_INVOICES']::text[]",
            name="permissions",
        ),
        CheckConstraint("status <> 'ACTIVE' OR activated_at IS NOT NULL", name="active_has_time"),
        # H1: a member of at most one master at a time; one open invitation per pair.
        Index(
            "uq_links_one_active_master",
            "member_id",
            unique=True,
            postgresql_where=text("status = 'ACTIVE'"),
        ),
        Index(
            "uq_links_one_open_invitation",
            "master_id",
            "member_id",
            unique=True,
            postgresql_where=text("status = 'INVITED'"),
        ),
        Index("ix_links_master_status_member", "master_id", "status", "member_id"),
        Index("ix_links_member_status", "member_id", "status"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    master_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    member_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    type: str = Field(sa_type=String(20))
    status: str = Field(sa_type=String(20), sa_column_kwargs={"server_default": "INVITED"})
    permissions: list[str] = Field(
        sa_type=ARRAY(Text), sa_column_kwargs={"server_default": text("'{}'")}
    )
    invited_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    activated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    ended_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    references_master_invoice_info: bool = Field(
        sa_type=Boolean, sa_column_kwargs={"server_default": text("false")}
    )


class LinkEvent(SQLModel, table=True):
    __tablename__ = "link_events"

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    link_id: int = Field(sa_type=BigInteger, foreign_key="links.id", index=True)
    status: str = Field(sa_type=String(20))
    permissions: list[str] = Field(sa_type=ARRAY(Text))
    actor: str = Field(sa_type=String(300))
    at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class BillTo(SQLModel, table=True):
    __tablename__ = "bill_tos"
    __table_args__ = (
        UniqueConstraint("id", "account_id", name="uq_bill_tos_id_account"),
        # H3: at most one primary per account (the service keeps "at least one while any").
        Index(
            "uq_bill_tos_one_primary",
            "account_id",
            unique=True,
            postgresql_where=text("is_primary"),
        ),
        Index("ix_bill_tos_account", "account_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    name: str = Field(sa_type=String(200))
    address: str | None = Field(default=None, sa_type=String(500))
    email: str | None = Field(default=None, sa_type=String(320))
    invoice_title: str | None = Field(default=None, sa_type=String(200))
    tax_id: str | None = Field(default=None, sa_type=String(64))
    is_primary: bool = Field(sa_type=Boolean, sa_column_kwargs={"server_default": text("false")})


class Site(SQLModel, table=True):
    __tablename__ = "sites"
    __table_args__ = (
        # H4: a site points at a bill-to of its own account.
        ForeignKeyConstraint(
            ["bill_to_id", "account_id"],
            ["bill_tos.id", "bill_tos.account_id"],
            name="fk_sites_bill_to_same_account",
        ),
        Index("ix_sites_account", "account_id", "id"),
        Index("ix_sites_bill_to", "bill_to_id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    name: str = Field(sa_type=String(200))
    address: str | None = Field(default=None, sa_type=String(500))
    branch: str | None = Field(default=None, sa_type=String(200))
    tax_group: str | None = Field(default=None, sa_type=String(64))
    bill_to_id: int = Field(sa_type=BigInteger)


class PlatformSettings(SQLModel, table=True):
    __tablename__ = "platform_settings"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: int = Field(primary_key=True, sa_type=BigInteger)
    billing_hierarchy_enabled: bool = Field(
        sa_type=Boolean, sa_column_kwargs={"server_default": text("true")}
    )


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    # NULL: an operator token (P4).
    account_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="accounts.id")
    name: str = Field(sa_type=String(200))
    token_hash: str = Field(sa_type=String(64), unique=True)
    created_by: str = Field(sa_type=String(300))
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


# The Core tables, under the names the services' queries use.
accounts = table_of(Account)
links = table_of(Link)
link_events = table_of(LinkEvent)
bill_tos = table_of(BillTo)
sites = table_of(Site)
platform_settings = table_of(PlatformSettings)
api_tokens = table_of(ApiToken)
