"""Relay connections, keyset-paginated in SQL: the cursor is the last row's sort key."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import strawberry
from graphql import GraphQLError

DEFAULT_PAGE = 50
MAX_PAGE = 500

T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int


@dataclass(frozen=True, slots=True)
class Page:
    """A validated page request: fetch ``limit + 1`` rows with key > ``after``."""

    limit: int
    after: int | None


def encode_cursor(key: int) -> str:
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = raw.partition(":")
        if prefix != "k" or not number.isdigit() or len(number) > 18:
            raise ValueError(cursor)
        key = int(number)
        if encode_cursor(key) != cursor:  # only cursors we issued (b64decode skips junk)
            raise ValueError(cursor)
        return key
    except (ValueError, UnicodeDecodeError):
        raise GraphQLError("Invalid cursor.", extensions={"code": "INVALID_INPUT"}) from None


def page(first: int | None, after: str | None) -> Page:
    limit = DEFAULT_PAGE if first is None else first
    if not 0 <= limit <= MAX_PAGE:
        raise GraphQLError(
            f"'first' must be between 0 and {MAX_PAGE}.", extensions={"code": "INVALID_INPUT"}
        )
    return Page(limit=limit, after=None if after is None else decode_cursor(after))


def connection(nodes: Sequence[T], keys: Sequence[int], request: Page, total: int) -> Connection[T]:
    """Build a connection from up to ``limit + 1`` fetched rows (the extra one means more)."""
    shown = min(len(nodes), request.limit)
    edges = [Edge(cursor=encode_cursor(keys[i]), node=nodes[i]) for i in range(shown)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(nodes) > request.limit,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=total,
    )
