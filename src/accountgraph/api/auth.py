"""P1, P4: the principal a request acts for, and the checks on root fields."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.permission import BasePermission

from accountgraph.api.errors import top_level
from accountgraph.domain import Principal, PrincipalKind

# Who acts (accountgraph.domain), with its kind as the schema's PrincipalKind enum.
strawberry.enum(PrincipalKind)  # registers the class itself


def principal_of(info: strawberry.Info[Any, Any]) -> Principal:
    principal: Principal | None = info.context.principal
    if principal is None:
        if _sent_a_token(info.context):
            raise top_level(
                "The token is unknown or revoked: send a valid one (accountgraph token create).",
                "UNAUTHENTICATED",
                reason="INVALID_TOKEN",
            )
        raise top_level(
            "Authentication required: send 'Authorization: Bearer <token>'.",
            "UNAUTHENTICATED",
            reason="NO_TOKEN",
        )
    return principal


def _sent_a_token(context: Any) -> bool:
    """Whether the request carried any Authorization (HTTP header or connection_init)."""
    request = getattr(context, "request", None)
    headers = getattr(request, "headers", None)
    if headers is not None and headers.get("authorization"):
        return True
    params = getattr(context, "connection_params", None)
    return isinstance(params, dict) and bool(params.get("Authorization"))


class IsAuthenticated(BasePermission):
    """Every root field carries this or IsOperator (a test checks the whole schema)."""

    def has_permission(self, source: Any, info: strawberry.Info[Any, Any], **kwargs: Any) -> bool:
        principal_of(info)
        return True


class IsOperator(BasePermission):
    """P4: what only platform operators do."""

    def has_permission(self, source: Any, info: strawberry.Info[Any, Any], **kwargs: Any) -> bool:
        if not principal_of(info).is_operator:
            raise top_level("Only platform operators may do this.", "FORBIDDEN")
        return True


__all__ = ["IsAuthenticated", "IsOperator", "Principal", "PrincipalKind", "principal_of"]
