"""The audit log's GraphQL types: ``AuditEntry`` (a Node) and ``AuditOutcome``."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import orjson
import strawberry
from sqlalchemy import Row

from accountgraph.api import composed, ids
from accountgraph.api.composed import AccountRef
from accountgraph.api.errors import ErrorCode
from accountgraph.api.node import Node
from accountgraph.domain import PrincipalKind

Info = strawberry.Info[Any, Any]
_CODES = {code.value: code for code in ErrorCode}


@strawberry.enum
class AuditOutcome(enum.Enum):
    OK = "OK"
    REFUSED = "REFUSED"
    ERROR = "ERROR"


@strawberry.type(description="One mutation as the audit log recorded it (append-only).")
class AuditEntry(Node):
    id: strawberry.ID
    at: datetime
    principal_kind: PrincipalKind
    token_name: str | None
    operation_name: str | None
    field: str
    outcome: AuditOutcome
    error_codes: list[ErrorCode]
    input: str = strawberry.field(description="The mutation's input as JSON text, secrets removed.")
    object_ids: list[strawberry.ID]
    request_id: str
    client_address: str | None
    account_id: strawberry.Private[int | None]

    @strawberry.field(description="The acting account (null for operators, or if not visible).")
    async def account(self, info: Info) -> AccountRef | None:
        if self.account_id is None:
            return None
        return await composed.account(info, self.account_id)

    @classmethod
    def from_row(cls, row: Row[Any]) -> AuditEntry:
        return cls(
            id=strawberry.ID(ids.encode("AuditEntry", row.id)),
            at=row.at,
            principal_kind=PrincipalKind(row.principal_kind),
            account_id=row.account_id,
            token_name=row.token_name,
            operation_name=row.operation_name,
            field=row.field,
            outcome=AuditOutcome(row.outcome),
            # Codes a later release dropped from the enum are not shown.
            error_codes=[_CODES[code] for code in row.error_codes if code in _CODES],
            input=orjson.dumps(row.input).decode(),
            object_ids=[strawberry.ID(object_id) for object_id in row.object_ids],
            request_id=row.request_id,
            client_address=row.client_address,
        )
