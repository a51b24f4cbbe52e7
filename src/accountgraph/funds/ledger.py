"""F1, F2, F9: balances, the journal, and the available quota.

``Ledger`` is one money operation in progress: it locks the accounts it touches (in
ascending id order, the one order every service uses, so no deadlock), collects postings,
checks that each bucket sums to zero, writes the entry and the new balances, and writes
an outbox row for every account whose available quota changed (A5).
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts.public import lock_accounts
from accountgraph.domain import ZERO
from accountgraph.funds.kinds import Bucket
from accountgraph.funds.models import BUCKETS

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
        # Under the locks: create the missing balance rows and read them all, in one trip
        # (the SELECT's snapshot does not see the CTE's inserts, hence the UNION).
        rows = (await conn.exec_driver_sql(_READ_BALANCES, (ids,))).all()
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
        after = self.after()
        changed = [i for i, new in after.items() if new.values != self.before[i].values]
        quota = [
            {
                "account_id": i,
                "before": str(self.before[i].available_quota),
                "after": str(after[i].available_quota),
                "cause": cause or kind,
            }
            for i in changed
            if after[i].available_quota != self.before[i].available_quota
        ]
        values: list[Any] = [kind, actor, reason]
        for account_id, bucket, amount in self.lines:
            values += [account_id, getattr(bucket, "value", bucket), amount]
        for i in changed:
            values += [i, *(after[i][bucket] for bucket in BUCKETS)]
        for row in quota:
            values += [QUOTA_TOPIC, orjson.dumps(row).decode()]
        statement = _commit_statement(len(self.lines), len(changed), len(quota))
        entry_id: int = (await self.conn.exec_driver_sql(statement, tuple(values))).scalar_one()
        return entry_id


# Statements as the driver takes them ($n parameters), built once per shape. The money
# types are explicit casts, so PostgreSQL never guesses a parameter's type.
_COLUMNS = list(BUCKETS.values())
_READ_BALANCES = f"""
WITH missing AS (
  INSERT INTO balances (account_id) SELECT unnest($1::bigint[])
  ON CONFLICT (account_id) DO NOTHING
  RETURNING account_id, {", ".join(_COLUMNS)}
)
SELECT * FROM missing
UNION ALL
SELECT account_id, {", ".join(_COLUMNS)} FROM balances WHERE account_id = ANY($1::bigint[])
"""


@functools.lru_cache(maxsize=256)
def _commit_statement(postings_count: int, balances_count: int, quota_count: int) -> str:
    """F9 in one round trip: the entry, its postings, the new balances of the accounts
    whose money changed and, for those whose available quota changed, an outbox row
    (A5) and the outbox's NOTIFY; returns the entry id."""
    numbers = itertools.count(4)

    def rows(count: int, casts: list[str]) -> str:
        return ", ".join(
            "(" + ", ".join(f"${next(numbers)}::{cast}" for cast in casts) + ")"
            for _ in range(count)
        )

    postings_sql = rows(postings_count, ["bigint", "text", "numeric"])
    balances_sql = rows(balances_count, ["bigint"] + ["numeric"] * len(_COLUMNS))
    quota_sql = rows(quota_count, ["text", "jsonb"])
    parts = [
        "entry AS (INSERT INTO journal_entries (kind, actor, reason) "
        "VALUES ($1::text, $2::text, $3::text) RETURNING id)",
        "posted AS (INSERT INTO postings (entry_id, account_id, bucket, amount) "
        f"SELECT entry.id, p.a, p.b, p.m FROM entry, (VALUES {postings_sql}) AS p (a, b, m))",
    ]
    if balances_count:
        assignments = ", ".join(f"{column} = v.{column}" for column in _COLUMNS)
        parts.append(
            f"moved AS (UPDATE balances SET {assignments} "
            f"FROM (VALUES {balances_sql}) AS v (account_id, {', '.join(_COLUMNS)}) "
            "WHERE balances.account_id = v.account_id)"
        )
    if quota_count:
        parts.append(
            "queued AS (INSERT INTO outbox (topic, payload) "
            "SELECT q.t, q.p || jsonb_build_object('entry_id', entry.id) "
            f"FROM entry, (VALUES {quota_sql}) AS q (t, p) RETURNING id)"
        )
        tail = (
            f"SELECT entry.id FROM entry, "
            f"(SELECT pg_notify('{outbox.NOTIFY_CHANNEL}', '') FROM queued LIMIT 1) AS n"
        )
    else:
        tail = "SELECT entry.id FROM entry"
    return "WITH " + ",\n".join(parts) + "\n" + tail
