"""Billing's part of ``Query``: T1 ``taxGroups`` and T3 ``generalLedger``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry

from accountgraph.api import ids
from accountgraph.api.auth import IsAuthenticated
from accountgraph.billing.tax_types import LedgerLine, TaxGroup, loaders

Info = strawberry.Info[Any, Any]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@strawberry.type
class BillingQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated], description="T1: every tax group, by code."
    )
    async def tax_groups(self, info: Info) -> list[TaxGroup]:
        return [TaxGroup.from_row(row) for row in await loaders(info).tax_groups()]

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="T3: the postings of journal entries made in [since, until) by branch, "
        "account and bucket, over the accounts whose finances the viewer sees (P2-P4); "
        "only accountId's if given. Σ net over a bucket's rows = Σ of its postings.",
    )
    async def general_ledger(
        self,
        info: Info,
        since: datetime,
        until: datetime,
        account_id: strawberry.ID | None = None,
    ) -> list[LedgerLine]:
        account = None
        if account_id is not None:
            account = ids.decode_as(account_id, "Account")
            if account is None:
                return []
        rows = await loaders(info).general_ledger(_utc(since), _utc(until), account)
        return [LedgerLine.from_row(row) for row in rows]
