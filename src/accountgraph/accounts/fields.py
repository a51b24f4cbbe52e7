"""H1, H3, H4, P4: the text inputs of the account graph, trimmed and bounded by their column.

A bad value is INVALID_INPUT at the input's own field (``displayName``, ``taxId``), so the
GraphQL error names what the client sent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table

from accountgraph.domain import DomainError, ErrorCode

MAX_TEXT = 200


def column_limit(table: Table, key: str) -> int:
    """MAX_TEXT, or less where the column is narrower (terms, tax id, tax group)."""
    length: int | None = getattr(table.c[key].type, "length", None)
    return min(MAX_TEXT, length) if length else MAX_TEXT


def checked_text(
    value: Any, field: list[str], *, required: bool = False, limit: int = MAX_TEXT
) -> Any:
    """Trimmed text within ``limit``; None stays None unless required."""
    if value is None:
        if required:
            raise DomainError(ErrorCode.INVALID_INPUT, "A value is required.", field)
        return None
    text = str(value).strip()
    if required and not text:
        raise DomainError(ErrorCode.INVALID_INPUT, "Must not be empty.", field)
    if len(text) > limit:
        raise DomainError(ErrorCode.INVALID_INPUT, f"At most {limit} characters.", field)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        raise DomainError(ErrorCode.INVALID_INPUT, "Must not contain NUL characters.", field)
    return text


def camel(name: str) -> str:
    """The GraphQL name of an input field: ``invoice_title`` is ``invoiceTitle``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
