"""sharing

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accepted_resource_types",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.CheckConstraint(
            "type IN ('RESERVED_INSTANCE', 'SAVINGS_PLAN', 'STORAGE_CAPACITY_UNIT')",
            name=op.f("ck_accepted_resource_types_type"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["accounts.id"],
            name=op.f("fk_accepted_resource_types_member_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("member_id", "type", name=op.f("pk_accepted_resource_types")),
    )
    op.create_table(
        "resources",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("capacity", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "type IN ('RESERVED_INSTANCE', 'SAVINGS_PLAN', 'STORAGE_CAPACITY_UNIT')",
            name=op.f("ck_resources_type"),
        ),
        sa.CheckConstraint("capacity > 0", name=op.f("ck_resources_capacity_positive")),
        sa.CheckConstraint("valid_from < valid_until", name=op.f("ck_resources_validity")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["accounts.id"], name=op.f("fk_resources_owner_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resources")),
    )
    op.create_index("ix_resources_owner", "resources", ["owner_id", "id"], unique=False)
    op.create_table(
        "shared_resource_types",
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.CheckConstraint(
            "type IN ('RESERVED_INSTANCE', 'SAVINGS_PLAN', 'STORAGE_CAPACITY_UNIT')",
            name=op.f("ck_shared_resource_types_type"),
        ),
        sa.ForeignKeyConstraint(
            ["master_id"], ["accounts.id"], name=op.f("fk_shared_resource_types_master_id_accounts")
        ),
        sa.PrimaryKeyConstraint("master_id", "type", name=op.f("pk_shared_resource_types")),
    )
    op.create_table(
        "sharing_state",
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("calculated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["master_id"], ["accounts.id"], name=op.f("fk_sharing_state_master_id_accounts")
        ),
        sa.PrimaryKeyConstraint("master_id", name=op.f("pk_sharing_state")),
    )
    op.create_table(
        "user_groups",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["master_id"], ["accounts.id"], name=op.f("fk_user_groups_master_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_groups")),
        sa.UniqueConstraint("master_id", "name", name="uq_user_groups_master_name"),
    )
    op.create_table(
        "resource_groups",
        sa.Column("resource_id", sa.BigInteger(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["user_groups.id"], name=op.f("fk_resource_groups_group_id_user_groups")
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"], ["resources.id"], name=op.f("fk_resource_groups_resource_id_resources")
        ),
        sa.PrimaryKeyConstraint("resource_id", "group_id", name=op.f("pk_resource_groups")),
    )
    op.create_index("ix_resource_groups_group", "resource_groups", ["group_id"], unique=False)
    op.create_table(
        "sharing_grants",
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("resource_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column(
            "since", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "reason IN ('OWNER', 'ACCOUNT_SETTING', 'USER_GROUP')",
            name=op.f("ck_sharing_grants_reason"),
        ),
        sa.PrimaryKeyConstraint(
            "master_id", "account_id", "resource_id", name=op.f("pk_sharing_grants")
        ),
    )
    op.create_index(
        "ix_sharing_grants_account", "sharing_grants", ["account_id", "resource_id"], unique=False
    )
    op.create_table(
        "user_group_members",
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["user_groups.id"],
            name=op.f("fk_user_group_members_group_id_user_groups"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["accounts.id"], name=op.f("fk_user_group_members_member_id_accounts")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_user_group_members")),
    )
    op.create_index("ix_user_group_members_group", "user_group_members", ["group_id"], unique=False)

    # S11: "is a recalculation pending for this master?" on every sharing read.
    op.execute(
        "CREATE INDEX ix_outbox_pending_sharing ON outbox (((payload->>'master_id')::bigint)) "
        "WHERE topic = 'sharing.recalculate' AND done_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_outbox_pending_sharing")
    op.drop_index("ix_user_group_members_group", table_name="user_group_members")
    op.drop_table("user_group_members")
    op.drop_index("ix_sharing_grants_account", table_name="sharing_grants")
    op.drop_table("sharing_grants")
    op.drop_index("ix_resource_groups_group", table_name="resource_groups")
    op.drop_table("resource_groups")
    op.drop_table("user_groups")
    op.drop_table("sharing_state")
    op.drop_table("shared_resource_types")
    op.drop_index("ix_resources_owner", table_name="resources")
    op.drop_table("resources")
    op.drop_table("accepted_resource_types")
