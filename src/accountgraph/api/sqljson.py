"""JSON built in PostgreSQL, formatted exactly as the GraphQL scalars format it in Python.

The read compiler (``api/compiler.py``) turns a selection into one statement whose one
value is the response JSON of that subtree; these are its pieces. Every formatter here
has a twin in Python that the differential test compares it with: global ids
(``api/ids.py``), cursors (``api/connections.py``), ``Decimal`` (``api/scalars.py``),
``DateTime`` (``datetime.isoformat`` of a UTC value).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Text,
    case,
    cast,
    func,
    literal_column,
    null,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.sql.expression import ScalarSelect

Json = ColumnElement[Any]
# json_build_object takes at most 100 arguments: 50 keys. Wider selections are left to
# the resolvers (a jsonb merge would reorder the keys).
MAX_KEYS = 50


class TooWide(Exception):
    """More keys in one object than one json_build_object holds."""


def key(name: str) -> ColumnElement[str]:
    """A response key as SQL text. GraphQL names are ``[_A-Za-z][_0-9A-Za-z]*``: safe to
    inline, and inlined keys keep the statement free of one bind parameter per key."""
    if not name.replace("_", "a").isalnum() or not name.isascii():
        raise ValueError(f"not a GraphQL name: {name!r}")
    return literal_column(f"'{name}'", Text)


def text(value: str) -> ColumnElement[str]:
    """A constant string (``__typename``, an enum value): names only, as for keys."""
    return key(value)


def obj(pairs: Sequence[tuple[str, ColumnElement[Any]]]) -> Json:
    """``{key: value, …}`` in the order given (json keeps key order; jsonb would not)."""
    if len(pairs) > MAX_KEYS:
        raise TooWide(len(pairs))
    return type_coerce(
        func.json_build_object(*[part for name, value in pairs for part in (key(name), value)]),
        JSON,
    )


def array(rows: ScalarSelect[Any] | ColumnElement[Any]) -> Json:
    """A scalar subquery of ``json_agg(…)``: ``[]`` when it found nothing."""
    return type_coerce(func.coalesce(rows, literal_column("'[]'::json")), JSON)


def global_id(type_name: str, row_id: ColumnElement[int]) -> ColumnElement[str]:
    """``ids.encode``: base64url of ``"<Type>:<id>"`` without padding."""
    return _base64url(key(type_name).concat(literal_column("':'")).concat(cast(row_id, Text)))


def cursor(sort_key: ColumnElement[int]) -> ColumnElement[str]:
    """``connections.encode_cursor``: base64url of ``"k:<key>"`` without padding."""
    return _base64url(literal_column("'k:'", Text).concat(cast(sort_key, Text)))


def _base64url(value: ColumnElement[str]) -> ColumnElement[str]:
    # encode() breaks lines every 76 characters: ids and cursors are far shorter.
    encoded = func.encode(
        func.convert_to(value, literal_column("'UTF8'")), literal_column("'base64'")
    )
    return func.rtrim(
        func.translate(encoded, literal_column("'+/'"), literal_column("'-_'")),
        literal_column("'='"),
    )


def money(value: ColumnElement[Any]) -> ColumnElement[str]:
    """``Decimal``: exactly two places, as text."""
    return cast(func.round(value, 2), Text)


def datetime(value: ColumnElement[Any]) -> ColumnElement[str]:
    """``datetime.isoformat()`` of the UTC value asyncpg returns: microseconds only when
    there are some, always ``+00:00``."""
    utc = value.op("AT TIME ZONE")(literal_column("'UTC'"))
    seconds = func.to_char(utc, literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS'"))
    micro = cast(func.date_part(literal_column("'microseconds'"), value), Integer).op("%")(
        literal_column("1000000")
    )
    fraction = case(
        (micro != 0, literal_column("'.'").concat(func.to_char(utc, literal_column("'US'")))),
        else_=literal_column("''"),
    )
    return case(
        (value.is_(None), null()), else_=seconds.concat(fraction).concat(literal_column("'+00:00'"))
    )
