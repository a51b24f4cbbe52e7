"""``Query.auditLog``: the audit log as a Relay connection, newest first (P1-P4), and
``node(id)`` for its entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from accountgraph.api import ids, node
from accountgraph.api.auth import IsAuthenticated, principal_of
from accountgraph.api.connections import Connection, connection, page
from accountgraph.audit import log
from accountgraph.audit.types import AuditEntry, AuditOutcome

Info = strawberry.Info[Any, Any]


@strawberry.type
class AuditQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description=(
            "Every mutation, newest first: operators see all entries; an account's users "
            "those of their own account's tokens and of the members they see (P2-P4). "
            "accountId: the entries of that account's tokens and those naming it among "
            "their objects; since <= at < until."
        ),
    )
    async def audit_log(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        account_id: strawberry.ID | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        field: str | None = None,
        outcome: AuditOutcome | None = None,
    ) -> Connection[AuditEntry]:
        principal = principal_of(info)
        request = page(first, after)
        account: tuple[int, str] | None = None
        if account_id is not None:
            row_id = ids.decode_as(account_id, "Account")
            if row_id is None:  # no such account: no entries
                return connection([], [], request, 0)
            account = (row_id, ids.encode("Account", row_id))
        filters = log.Filters(
            account=account,
            since=since,
            until=until,
            field=field,
            outcome=None if outcome is None else outcome.value,
        )
        async with info.context.engine.connect() as conn:
            rows, total = await log.page(
                conn, principal, filters, limit=request.limit, after=request.after
            )
        return connection(
            [AuditEntry.from_row(row) for row in rows], [row.id for row in rows], request, total
        )


async def audit_entry_node(info: Info, row_id: int) -> AuditEntry | None:
    async with info.context.engine.connect() as conn:
        found = await log.entries_by_id(conn, principal_of(info), [row_id])
    row = found.get(row_id)
    return None if row is None else AuditEntry.from_row(row)


node.register("AuditEntry", audit_entry_node)
