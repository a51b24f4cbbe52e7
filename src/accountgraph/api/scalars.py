"""Decimal: a string on the wire, exactly two places out, validated by the mutation in."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NewType

import strawberry

from accountgraph.api.errors import DomainError, ErrorCode

CENT = Decimal("0.01")

# Input stays raw (any string or number) so that the mutation can answer a bad amount
# with INVALID_AMOUNT at its field path instead of a GraphQL error (API.md, Money).
RawDecimal = NewType("RawDecimal", object)


def _serialize(value: object) -> str:
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    return str(value.quantize(CENT))


def _parse(value: object) -> object:
    return value


DecimalScalar = strawberry.scalar(
    RawDecimal,
    name="Decimal",
    description="An exact amount: a string with at most 2 decimal places in, exactly 2 out.",
    serialize=_serialize,
    parse_value=_parse,
)


def amount(value: object, field: list[str], *, positive: bool = True) -> Decimal:
    """Validate a money input: finite, at most 2 places, > 0 unless ``positive`` is False."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount must be a decimal string.", field)
    text = str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount is not a number.", field) from None
    if not number.is_finite() or "e" in text.lower():
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount must be a plain decimal.", field)
    if number != number.quantize(CENT):
        raise DomainError(ErrorCode.INVALID_AMOUNT, "At most 2 decimal places.", field)
    if abs(number) >= Decimal("1e18"):
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount is too large.", field)
    if positive and number <= 0:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount must be greater than zero.", field)
    return number.quantize(CENT)
