"""W1, W3, B4 for verify-ledger (F9): stored value agrees with its records, and every
invoiced charge is a charge on a line whose amount its charges make up.

Registered as a ledger check of the funds area (``funds.public.register_ledger_check``), so
``accountgraph verify-ledger`` and the tests' invariants cover stored value: every card's
``remaining`` is its amount minus its uses, and every ``TOP_UP`` card was bought by exactly
one top-up order of its amount (an ``ISSUED`` card by none).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_CARDS = text("""
SELECT c.id, c.amount, c.remaining, coalesce(u.used, 0) AS used
FROM stored_value_cards c
LEFT JOIN (SELECT card_id, sum(amount) AS used FROM stored_value_uses GROUP BY card_id) u
  ON u.card_id = c.id
WHERE c.remaining <> c.amount - coalesce(u.used, 0)
ORDER BY c.id
""")

_ORDERS = text("""
SELECT c.id, c.origin, c.amount, count(o.id) AS orders, coalesce(sum(o.amount), 0) AS paid
FROM stored_value_cards c LEFT JOIN top_up_orders o ON o.card_id = c.id
GROUP BY c.id, c.origin, c.amount
HAVING (c.origin = 'TOP_UP' AND (count(o.id) <> 1 OR coalesce(sum(o.amount), 0) <> c.amount))
    OR (c.origin = 'ISSUED' AND count(o.id) <> 0)
ORDER BY c.id
""")


async def stored_value_differences(conn: AsyncConnection) -> list[str]:
    """Every way stored value disagrees with its uses and orders; empty when sound."""
    found = [
        f"stored value card {row.id}: remaining {row.remaining} but amount {row.amount} "
        f"minus uses {row.used} is {row.amount - row.used}"
        for row in (await conn.execute(_CARDS)).all()
    ]
    found += [
        f"stored value card {row.id} ({row.origin}, {row.amount}): {row.orders} top-up "
        f"order(s) paying {row.paid}"
        for row in (await conn.execute(_ORDERS)).all()
    ]
    return found


# B4: what invoiced_charges' foreign keys held until 0012, and more: every row names a
# charge and a line that exist, and every line's charges sum to its amount.
_INVOICED = text("""
SELECT l.id AS line_id, l.amount, coalesce(sum(c.amount), 0) AS charged,
       count(i.charge_id) AS rows, count(c.id) AS found
FROM invoice_lines l
LEFT JOIN invoiced_charges i ON i.line_id = l.id
LEFT JOIN charges c ON c.id = i.charge_id
GROUP BY l.id, l.amount
HAVING l.amount <> coalesce(sum(c.amount), 0) OR count(i.charge_id) <> count(c.id)
UNION ALL
SELECT NULL, NULL, NULL, count(*), 0 FROM invoiced_charges i
WHERE NOT EXISTS (SELECT 1 FROM invoice_lines l WHERE l.id = i.line_id)
HAVING count(*) > 0
""")


async def invoice_differences(conn: AsyncConnection) -> list[str]:
    """Every invoice line whose charges are missing or do not make up its amount, and
    invoiced charges on no line; empty when sound."""
    found = []
    for row in (await conn.execute(_INVOICED)).all():
        if row.line_id is None:
            found.append(f"{row.rows} invoiced charge(s) on no invoice line")
        elif row.rows != row.found:
            found.append(f"invoice line {row.line_id}: {row.rows - row.found} unknown charge(s)")
        else:
            found.append(
                f"invoice line {row.line_id}: amount {row.amount} but its charges {row.charged}"
            )
    return found
