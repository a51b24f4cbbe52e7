"""Errors are data: every mutation payload carries ``userErrors`` with a rule's code. The
rules raise ``accountgraph.domain.DomainError``; this module maps it to ``UserError``."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError

from accountgraph.domain import DomainError, ErrorCode, NotFound

# The rules' codes (accountgraph.domain), as the schema's ErrorCode enum.
strawberry.enum(ErrorCode)  # registers the class itself


@strawberry.type
class UserError:
    code: ErrorCode
    field: list[str] | None
    message: str

    @classmethod
    def of(cls, error: DomainError) -> UserError:
        return cls(code=error.code, field=error.field, message=error.message)


def top_level(message: str, code: str, **extensions: str) -> GraphQLError:
    """A top-level GraphQL error with ``extensions.code`` (UNAUTHENTICATED, FORBIDDEN)."""
    return GraphQLError(message, extensions={"code": code, **extensions})


__all__ = ["DomainError", "ErrorCode", "NotFound", "UserError", "top_level"]
