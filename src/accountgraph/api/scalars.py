"""Decimal: a string on the wire, exactly two places out, validated by the mutation in."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, NewType

import strawberry
from graphql import ValueNode, value_from_ast_untyped

from accountgraph.api.errors import DomainError, ErrorCode

CENT = Decimal("0.01")
_PLAIN = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$", re.ASCII)
MAX_AMOUNT = Decimal("1e15")  # NUMERIC(20,2) holds 18 digits before the point

# Input stays raw (any string or number) so that the mutation can answer a bad amount
# with INVALID_AMOUNT at its field path instead of a GraphQL error (API.md, Money).
if TYPE_CHECKING:  # outputs are Decimals; inputs arrive raw and go through amount()
    Money = Decimal
else:
    Money = NewType("Money", object)


class Exact(Decimal):
    """A Decimal shown with every place it has (at least two): a rate or a percentage
    (T1: a tax rate has up to 4 places, ``8.875``). Amounts are plain Decimals, shown
    with exactly two (API.md, "Money")."""


def _serialize(value: object) -> str:
    if isinstance(value, Exact):
        cents = value.quantize(CENT)
        return str(cents) if cents == value else format(value.normalize(), "f")
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    return str(value.quantize(CENT))


def _parse(value: object) -> object:
    return value


def _parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> object:
    return value_from_ast_untyped(node, variables)


SCALAR_MAP: dict[object, Any] = {
    Money: strawberry.scalar(
        name="Decimal",
        description="An exact amount: a string with at most 2 decimal places in, exactly 2 out.",
        serialize=_serialize,
        parse_value=_parse,
        parse_literal=_parse_literal,
    )
}


def amount(
    value: object, field: list[str], *, allow_zero: bool = False, allow_negative: bool = False
) -> Decimal:
    """Validate a money input: a finite plain decimal with at most 2 places; > 0 unless
    ``allow_zero`` (then >= 0) or ``allow_negative`` (then any non-zero signed amount)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount must be a decimal string.", field)
    text = str(value).strip()
    if not _PLAIN.match(text):  # no exponents, NaN, "1_000" or non-ASCII digits
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount must be a plain decimal.", field)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount is not a number.", field) from None
    if abs(number) >= MAX_AMOUNT:  # first: quantize() of 27+ digits raises InvalidOperation
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount is too large.", field)
    if number != number.quantize(CENT):
        raise DomainError(ErrorCode.INVALID_AMOUNT, "At most 2 decimal places.", field)
    if number < 0 and not allow_negative:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount must not be negative.", field)
    if number == 0 and not allow_zero:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "Amount must not be zero.", field)
    return number.quantize(CENT)
