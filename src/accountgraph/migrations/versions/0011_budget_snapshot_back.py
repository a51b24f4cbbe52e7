"""budget_evaluations.snapshot back, for the previous release's workers

0010 dropped the column in the same release that stopped reading it: expand and contract
at once. The previous release's workers, still running while a deploy replaces them, read
and write it on every budget evaluation, and failed on 0010 (tests/test_upgrades.py
found it). This release neither reads nor writes it; the release after drops it
(CONTRIBUTING.md, "Adding a migration").

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("budget_evaluations", sa.Column("snapshot", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("budget_evaluations", "snapshot")
