"""F9: recompute every balance from its postings and report any difference."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.funds import ports
from accountgraph.funds.models import BUCKETS

_BUCKET_COLUMNS = ", ".join(f"('{bucket}', b.{column})" for bucket, column in BUCKETS.items())

# Balances against the sums of their postings, per account and bucket (both directions:
# a balance with no postings, postings with no balance row).
_DIFFERENCES = text(f"""
WITH posted AS (
  SELECT account_id, bucket, sum(amount) AS total
  FROM postings WHERE account_id IS NOT NULL GROUP BY account_id, bucket),
held AS (
  SELECT b.account_id, v.bucket, v.amount
  FROM balances b CROSS JOIN LATERAL (VALUES {_BUCKET_COLUMNS}) AS v(bucket, amount))
SELECT coalesce(h.account_id, p.account_id) AS account_id,
       coalesce(h.bucket, p.bucket) AS bucket,
       coalesce(h.amount, 0) AS balance, coalesce(p.total, 0) AS posted
FROM held h FULL JOIN posted p ON p.account_id = h.account_id AND p.bucket = h.bucket
WHERE coalesce(h.amount, 0) <> coalesce(p.total, 0)
ORDER BY 1, 2
""")

_UNBALANCED = text("""
SELECT entry_id, bucket, sum(amount) AS total FROM postings
GROUP BY entry_id, bucket HAVING sum(amount) <> 0 ORDER BY 1, 2
""")


@dataclass(frozen=True, slots=True)
class Difference:
    what: str

    def __str__(self) -> str:
        return self.what


async def verify(conn: AsyncConnection) -> list[Difference]:
    """Every way the ledger disagrees with itself; empty when it is sound."""
    found: list[Difference] = []
    for row in (await conn.execute(_DIFFERENCES)).all():
        found.append(
            Difference(
                f"account {row.account_id} {row.bucket}: balance "
                f"{row.balance} but postings sum to {row.posted}"
            )
        )
    for row in (await conn.execute(_UNBALANCED)).all():
        found.append(
            Difference(f"entry {row.entry_id} {row.bucket}: postings sum to {row.total}, not 0")
        )
    total: Decimal = (
        await conn.execute(text("SELECT coalesce(sum(amount), 0) FROM postings"))
    ).scalar_one()
    if total != 0:
        found.append(Difference(f"all postings sum to {total}, not 0"))
    for check in ports.ledger_checks():  # W1: billing's stored value
        found += [Difference(what) for what in await check(conn)]
    return found
