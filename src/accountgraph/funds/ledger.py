"""F1, F2, F9: balances, the journal, and the available quota.

``Ledger`` is one money operation in progress: it locks the accounts it touches (in
ascending id order, the one order every service uses, so no deadlock), collects postings,
checks that each bucket sums to zero, writes the entry and the new balances, and writes
an outbox row for every account whose available quota changed (A5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts.public import lock_accounts
from accountgraph.domain import ZERO
from accountgraph.funds.kinds import Bucket
from accountgraph.funds.models import BUCKETS, balances, journal_entries, postings

QUOTA_TOPIC = "quota.changed"
assert set(BUCKETS) == set(Bucket), "one bucket, one balance column"


@dataclass(frozen=True, slots=True)
class Balance:
    """One account's balances, plus whether its own cash is frozen (U3)."""

    account_id: int
    values: Mapping[str, Decimal]
    frozen: bool = False

    def __getitem__(self, bucket: str) -> Decimal:
        return self.values[bucket]

    @property
    def frozen_cash(self) -> Decimal:
        """U3: a trusteeship member's own cash (cash it was not allocated) is frozen."""
        return self[Bucket.CASH] - self[Bucket.TRANSFERRED_CASH] if self.frozen else ZERO

    @property
    def withdrawable_cash(self) -> Decimal:
        """F8: cash minus transferred cash (frozen cash is withdrawable)."""
        return self[Bucket.CASH] - self[Bucket.TRANSFERRED_CASH]

    @property
    def available_quota(self) -> Decimal:
        return available_quota(self.values, self.frozen_cash)

    def plus(self, deltas: Mapping[str, Decimal]) -> Balance:
        values = {bucket: self.values[bucket] + deltas.get(bucket, ZERO) for bucket in BUCKETS}
        return replace(self, values=values)


def available_quota(values: Mapping[str, Decimal], frozen_cash: Decimal) -> Decimal:
    """F2: cash + banker's acceptance bill + credit limit + credit refund - unsettled amount
    - (outstanding fees - negative bill), with frozen cash left out of the cash."""
    return (
        values[Bucket.CASH]
        - frozen_cash
        + values[Bucket.BANKERS_ACCEPTANCE_BILL]
        + values[Bucket.CREDIT_LIMIT]
        + values[Bucket.CREDIT_REFUND]
        - values[Bucket.UNSETTLED_AMOUNT]
        - (values[Bucket.OUTSTANDING_FEES] - values[Bucket.NEGATIVE_BILL])
    )


def balance_of(row: Any, *, frozen: bool) -> Balance:
    return Balance(
        account_id=row.account_id,
        values={bucket: getattr(row, column) for bucket, column in BUCKETS.items()},
        frozen=frozen,
    )


@dataclass
class Ledger:
    """One journal entry being built over locked accounts."""

    conn: AsyncConnection
    before: dict[int, Balance]
    lines: list[tuple[int | None, Bucket, Decimal]] = field(default_factory=list)

    @classmethod
    async def lock(
        cls, conn: AsyncConnection, account_ids: Iterable[int], *, frozen: Iterable[int] = ()
    ) -> Ledger:
        """Lock the accounts (ascending ids) and read their balances; accounts listed in
        ``frozen`` are trusteeship members whose own cash is frozen (U3)."""
        ids = sorted(set(account_ids))
        await lock_accounts(conn, *ids)
        await conn.execute(
            pg_insert(balances).values([{"account_id": i} for i in ids]).on_conflict_do_nothing()
        )
        rows = (await conn.execute(select(balances).where(balances.c.account_id.in_(ids)))).all()
        frozen_ids = set(frozen)
        return cls(
            conn,
            {row.account_id: balance_of(row, frozen=row.account_id in frozen_ids) for row in rows},
        )

    def post(self, account_id: int | None, bucket: Bucket, amount: Decimal) -> None:
        """One posting; ``None`` is the EXTERNAL counterparty."""
        assert bucket in BUCKETS, bucket
        if amount != 0:
            self.lines.append((account_id, bucket, amount))

    def move(self, bucket: Bucket, source: int | None, target: int | None, amount: Decimal) -> None:
        """A balanced pair: ``amount`` of ``bucket`` from ``source`` to ``target``."""
        self.post(source, bucket, -amount)
        self.post(target, bucket, amount)

    def after(self) -> dict[int, Balance]:
        deltas: dict[int, dict[str, Decimal]] = defaultdict(dict)
        for account_id, bucket, amount in self.lines:
            if account_id is not None:
                deltas[account_id][bucket] = deltas[account_id].get(bucket, ZERO) + amount
        return {i: balance.plus(deltas.get(i, {})) for i, balance in self.before.items()}

    async def commit(
        self, kind: str, actor: str, *, reason: str | None = None, cause: str | None = None
    ) -> int:
        """Write the entry, its postings and the new balances; returns the entry id."""
        sums: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for account_id, bucket, amount in self.lines:
            assert account_id is None or account_id in self.before, "post on a locked account"
            sums[bucket] += amount
        assert all(total == 0 for total in sums.values()), f"unbalanced entry: {dict(sums)}"
        assert self.lines, "an entry changes money"
        entry_id: int = (
            await self.conn.execute(
                insert(journal_entries)
                .values(kind=kind, actor=actor, reason=reason)
                .returning(journal_entries.c.id)
            )
        ).scalar_one()
        await self.conn.execute(
            insert(postings),
            [
                {"entry_id": entry_id, "account_id": a, "bucket": b, "amount": m}
                for a, b, m in self.lines
            ],
        )
        after = self.after()
        for account_id, new in after.items():
            old = self.before[account_id]
            if new.values == old.values:
                continue
            await self.conn.execute(
                update(balances)
                .where(balances.c.account_id == account_id)
                .values({BUCKETS[b]: new[b] for b in BUCKETS if new[b] != old[b]})
            )
            if new.available_quota != old.available_quota:
                await outbox.add(
                    self.conn,
                    QUOTA_TOPIC,
                    {
                        "account_id": account_id,
                        "before": str(old.available_quota),
                        "after": str(new.available_quota),
                        "cause": cause or kind,
                        "entry_id": entry_id,
                    },
                )
        return entry_id
