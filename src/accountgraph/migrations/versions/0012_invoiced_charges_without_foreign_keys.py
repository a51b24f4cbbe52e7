"""invoiced_charges without foreign keys

A bill cycle writes one invoiced_charges row per charge it invoices (100,000 in a cycle
of 2,000 members). Each row's two foreign keys looked its charge and its line up again
and took a KEY SHARE lock on both rows, which writes to every invoiced charge's row:
two thirds of the whole cycle (bench/bill_cycle.py: the INSERT took 840 ms with both
keys, 500 ms with the line's alone, 177 ms with none). The keys guarded nothing that can
happen: charges, invoice lines and invoiced charges are never edited or deleted (their
immutable triggers), the cycle inserts only charge ids it has just read from charges and
line ids its own INSERT has just returned, and every cycle checks after the write that
each line's charges sum to its amount (billing.invoices.assert_totals, which joins all
three). The primary key (one invoice per charge) stays. An expand step: no release
reads the constraints.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_invoiced_charges_charge_id_charges", "invoiced_charges")
    op.drop_constraint("fk_invoiced_charges_line_id_invoice_lines", "invoiced_charges")


def downgrade() -> None:
    op.create_foreign_key(
        "fk_invoiced_charges_line_id_invoice_lines",
        "invoiced_charges",
        "invoice_lines",
        ["line_id"],
        ["id"],
    )
    op.create_foreign_key(
        "fk_invoiced_charges_charge_id_charges",
        "invoiced_charges",
        "charges",
        ["charge_id"],
        ["id"],
    )
