"""What the rules speak in, with no GraphQL: who acts (``Principal``), how a rule refuses
(``DomainError`` with an ``ErrorCode``), and money's zero. Services import this module;
the GraphQL kit (``api/errors.py``, ``api/auth.py``) exposes the same enums in the schema
and turns a ``DomainError`` into a ``UserError``."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal("0.00")


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


class PrincipalKind(enum.Enum):
    OPERATOR = "OPERATOR"
    ACCOUNT_USER = "ACCOUNT_USER"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    account_id: int | None
    actor: str
    """Who did it, as recorded in histories: ``operator:<token>`` or ``<account>:<token>``."""

    @property
    def is_operator(self) -> bool:
        return self.kind is PrincipalKind.OPERATOR

    @property
    def key(self) -> str:
        """Whose budget, store and subscription slots: ``operator`` (all operators share
        one) or ``account:<id>`` (all of an account's tokens)."""
        return "operator" if self.is_operator else f"account:{self.account_id}"


__all__ = ["ZERO", "DomainError", "ErrorCode", "NotFound", "Principal", "PrincipalKind"]
