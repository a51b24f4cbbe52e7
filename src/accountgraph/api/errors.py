"""Errors are data: every mutation payload carries ``userErrors`` with a rule's code."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import strawberry
from graphql import GraphQLError


@strawberry.enum
class ErrorCode(enum.Enum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    EXCEEDS_NET_ALLOCATED = "EXCEEDS_NET_ALLOCATED"
    EXCEEDS_UNSPENT = "EXCEEDS_UNSPENT"
    CREDIT_EXCEEDS_AVAILABLE = "CREDIT_EXCEEDS_AVAILABLE"
    QUOTA_WOULD_BE_NON_POSITIVE = "QUOTA_WOULD_BE_NON_POSITIVE"
    PERMISSION_NOT_GRANTED = "PERMISSION_NOT_GRANTED"
    LINK_NOT_ACTIVE = "LINK_NOT_ACTIVE"
    ALREADY_A_MEMBER = "ALREADY_A_MEMBER"
    OUTSTANDING_FEES = "OUTSTANDING_FEES"
    HIERARCHY_DISABLED = "HIERARCHY_DISABLED"
    NOT_ALLOWED_WHILE_ASSOCIATED = "NOT_ALLOWED_WHILE_ASSOCIATED"
    NOT_TRUSTEESHIP = "NOT_TRUSTEESHIP"
    SHARING_LIMIT = "SHARING_LIMIT"
    PRIMARY_REQUIRED = "PRIMARY_REQUIRED"
    REFERENCED_READ_ONLY = "REFERENCED_READ_ONLY"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    CONFLICT = "CONFLICT"
    COST_CENTER_DISABLED = "COST_CENTER_DISABLED"  # C1-C6 (cost center)


class DomainError(Exception):
    """A rule refused the operation; nothing was changed (the transaction rolls back)."""

    def __init__(self, code: ErrorCode, message: str, field: Sequence[str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = list(field) if field is not None else None


class NotFound(DomainError):
    def __init__(self, field: Sequence[str], what: str = "object"):
        super().__init__(ErrorCode.NOT_FOUND, f"No such {what}.", field)


@strawberry.type
class UserError:
    code: ErrorCode
    field: list[str] | None
    message: str

    @classmethod
    def of(cls, error: DomainError) -> UserError:
        return cls(code=error.code, field=error.field, message=error.message)


def top_level(message: str, code: str) -> GraphQLError:
    """A top-level GraphQL error with ``extensions.code`` (UNAUTHENTICATED, FORBIDDEN)."""
    return GraphQLError(message, extensions={"code": code})
