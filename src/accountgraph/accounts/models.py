"""H1-H5, P1: the tables of the account graph.

Declared with SQLAlchemy Core: the read path works on rows, not entities, and the
constraints below state what a row can state, so the database refuses a broken graph
even if a service were wrong.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from accountgraph.db import metadata

ACCOUNT_STATUSES = ("ACTIVE", "SUSPENDED", "CLOSED")
LINK_TYPES = ("TRUSTEESHIP", "FINANCIAL")
LINK_STATUSES = ("INVITED", "ACTIVE", "DECLINED", "DISSOCIATED")
LINK_PERMISSIONS = ("SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


accounts = Table(
    "accounts",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("branch", String(200)),
    Column("terms", String(50)),
    Column("salesperson", String(200)),
    Column("status", String(20), nullable=False, server_default="ACTIVE"),
    Column("cost_center_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(_in("status", ACCOUNT_STATUSES), name="status"),
    CheckConstraint("length(name) > 0", name="name_not_empty"),
)
Index("ix_accounts_lower_name", func.lower(accounts.c.name))

links = Table(
    "links",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("master_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("member_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("type", String(20), nullable=False),
    Column("status", String(20), nullable=False, server_default="INVITED"),
    Column("permissions", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("invited_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("activated_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column(
        "references_master_invoice_info",
        Boolean,
        nullable=False,
        server_default=text("false"),
    ),
    CheckConstraint(_in("type", LINK_TYPES), name="type"),
    CheckConstraint(_in("status", LINK_STATUSES), name="status"),
    CheckConstraint("master_id <> member_id", name="not_self"),
    CheckConstraint(
        "permissions <@ ARRAY['SYNC_CREDIT_CONTROL','VIEW_FINANCE','MANAGE_INVOICES']::text[]",
        name="permissions",
    ),
    CheckConstraint("status <> 'ACTIVE' OR activated_at IS NOT NULL", name="active_has_time"),
)
# H1: a member of at most one master at a time; one open invitation per pair.
Index(
    "uq_links_one_active_master",
    links.c.member_id,
    unique=True,
    postgresql_where=links.c.status == "ACTIVE",
)
Index(
    "uq_links_one_open_invitation",
    links.c.master_id,
    links.c.member_id,
    unique=True,
    postgresql_where=links.c.status == "INVITED",
)
Index("ix_links_master_status_member", links.c.master_id, links.c.status, links.c.member_id)
Index("ix_links_member_status", links.c.member_id, links.c.status)

link_events = Table(
    "link_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("link_id", BigInteger, ForeignKey("links.id"), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("permissions", ARRAY(Text), nullable=False),
    Column("actor", String(300), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

bill_tos = Table(
    "bill_tos",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("address", String(500)),
    Column("email", String(320)),
    Column("invoice_title", String(200)),
    Column("tax_id", String(64)),
    Column("is_primary", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("id", "account_id", name="uq_bill_tos_id_account"),
)
# H3: at most one primary per account (the service keeps "at least one while any").
Index(
    "uq_bill_tos_one_primary",
    bill_tos.c.account_id,
    unique=True,
    postgresql_where=bill_tos.c.is_primary,
)
Index("ix_bill_tos_account", bill_tos.c.account_id, bill_tos.c.id)

sites = Table(
    "sites",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("address", String(500)),
    Column("branch", String(200)),
    Column("tax_group", String(64)),
    Column("bill_to_id", BigInteger, nullable=False),
    # H4: a site points at a bill-to of its own account.
    ForeignKeyConstraint(
        ["bill_to_id", "account_id"],
        ["bill_tos.id", "bill_tos.account_id"],
        name="fk_sites_bill_to_same_account",
    ),
)
Index("ix_sites_account", sites.c.account_id, sites.c.id)
Index("ix_sites_bill_to", sites.c.bill_to_id)

platform_settings = Table(
    "platform_settings",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("billing_hierarchy_enabled", Boolean, nullable=False, server_default=text("true")),
    CheckConstraint("id = 1", name="single_row"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # NULL: an operator token (P4).
    Column("account_id", BigInteger, ForeignKey("accounts.id")),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_by", String(300), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)
