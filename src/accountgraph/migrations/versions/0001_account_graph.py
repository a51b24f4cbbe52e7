"""account graph, settings, tokens, outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("branch", sa.String(length=200), nullable=True),
        sa.Column("terms", sa.String(length=50), nullable=True),
        sa.Column("salesperson", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="ACTIVE", nullable=False),
        sa.Column(
            "cost_center_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')", name=op.f("ck_accounts_status")
        ),
        sa.CheckConstraint("length(name) > 0", name=op.f("ck_accounts_name_not_empty")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_index(
        "ix_accounts_lower_name", "accounts", [sa.literal_column("lower(name)")], unique=False
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("send_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(
        "ix_outbox_sent_not_done",
        "outbox",
        ["sent_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NOT NULL AND done_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_table(
        "platform_settings",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column(
            "billing_hierarchy_enabled",
            sa.Boolean(),
            server_default=sa.text("true"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_platform_settings_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_settings")),
    )
    op.execute("INSERT INTO platform_settings (id, billing_hierarchy_enabled) VALUES (1, true)")
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=300), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_api_tokens_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "bill_tos",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("invoice_title", sa.String(length=200), nullable=True),
        sa.Column("tax_id", sa.String(length=64), nullable=True),
        sa.Column("is_primary", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_bill_tos_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bill_tos")),
        sa.UniqueConstraint("id", "account_id", name="uq_bill_tos_id_account"),
    )
    op.create_index("ix_bill_tos_account", "bill_tos", ["account_id", "id"], unique=False)
    op.create_index(
        "uq_bill_tos_one_primary",
        "bill_tos",
        ["account_id"],
        unique=True,
        postgresql_where="is_primary",
    )
    op.create_table(
        "links",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="INVITED", nullable=False),
        sa.Column(
            "permissions",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "invited_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "references_master_invoice_info",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "permissions <@ ARRAY['SYNC_CREDIT_CONTROL','VIEW_FINANCE','MANAGE_INVOICES']::text[]",
            name=op.f("ck_links_permissions"),
        ),
        sa.CheckConstraint(
            "status <> 'ACTIVE' OR activated_at IS NOT NULL", name=op.f("ck_links_active_has_time")
        ),
        sa.CheckConstraint(
            "status IN ('INVITED', 'ACTIVE', 'DECLINED', 'DISSOCIATED')",
            name=op.f("ck_links_status"),
        ),
        sa.CheckConstraint("type IN ('TRUSTEESHIP', 'FINANCIAL')", name=op.f("ck_links_type")),
        sa.CheckConstraint("master_id <> member_id", name=op.f("ck_links_not_self")),
        sa.ForeignKeyConstraint(
            ["master_id"], ["accounts.id"], name=op.f("fk_links_master_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["accounts.id"], name=op.f("fk_links_member_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
    )
    op.create_index(
        "ix_links_master_status_member", "links", ["master_id", "status", "member_id"], unique=False
    )
    op.create_index("ix_links_member_status", "links", ["member_id", "status"], unique=False)
    op.create_index(
        "uq_links_one_active_master",
        "links",
        ["member_id"],
        unique=True,
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )
    op.create_index(
        "uq_links_one_open_invitation",
        "links",
        ["master_id", "member_id"],
        unique=True,
        postgresql_where=sa.text("status = 'INVITED'"),
    )
    op.create_table(
        "link_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("link_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("permissions", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["link_id"], ["links.id"], name=op.f("fk_link_events_link_id_links")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_events")),
    )
    op.create_index(op.f("ix_link_events_link_id"), "link_events", ["link_id"], unique=False)
    op.create_table(
        "sites",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("branch", sa.String(length=200), nullable=True),
        sa.Column("tax_group", sa.String(length=64), nullable=True),
        sa.Column("bill_to_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_sites_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["bill_to_id", "account_id"],
            ["bill_tos.id", "bill_tos.account_id"],
            name="fk_sites_bill_to_same_account",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sites")),
    )
    op.create_index("ix_sites_account", "sites", ["account_id", "id"], unique=False)
    op.create_index("ix_sites_bill_to", "sites", ["bill_to_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sites_bill_to", table_name="sites")
    op.drop_index("ix_sites_account", table_name="sites")
    op.drop_table("sites")
    op.drop_index(op.f("ix_link_events_link_id"), table_name="link_events")
    op.drop_table("link_events")
    op.drop_index(
        "uq_links_one_open_invitation",
        table_name="links",
        postgresql_where=sa.text("status = 'INVITED'"),
    )
    op.drop_index(
        "uq_links_one_active_master",
        table_name="links",
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )
    op.drop_index("ix_links_member_status", table_name="links")
    op.drop_index("ix_links_master_status_member", table_name="links")
    op.drop_table("links")
    op.drop_index("uq_bill_tos_one_primary", table_name="bill_tos", postgresql_where="is_primary")
    op.drop_index("ix_bill_tos_account", table_name="bill_tos")
    op.drop_table("bill_tos")
    op.drop_table("api_tokens")
    op.drop_table("platform_settings")
    op.drop_index(
        "ix_outbox_unsent", table_name="outbox", postgresql_where=sa.text("sent_at IS NULL")
    )
    op.drop_index(
        "ix_outbox_sent_not_done",
        table_name="outbox",
        postgresql_where=sa.text("sent_at IS NOT NULL AND done_at IS NULL"),
    )
    op.drop_table("outbox")
    op.drop_index("ix_accounts_lower_name", table_name="accounts")
    op.drop_table("accounts")
