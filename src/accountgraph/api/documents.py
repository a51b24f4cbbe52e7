"""The documents a client sends, parsed once: a bounded cache (by entries and by bytes) of
each text's parsed document, what its shape says (``api/shape.py``) and its validations
(``api/validation.py``).

Documents that miss the cache are charged to the client's rate-limit bucket before they
are parsed (``api/guard.py``), refused ones more, so a client sending ever-new bad
documents runs out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import DocumentNode, GraphQLError, parse

from accountgraph.api.cache import BoundedCache
from accountgraph.api.shape import shape_problem

# Bounded by entries and by bytes; a document longer than ``MAX_CACHED_CHARS`` is parsed
# and validated every time, never kept. A parsed document takes a multiple of its text in
# memory: ``BYTES_PER_CHAR`` is that multiple, measured on the examples (about 40).
CACHE_ENTRIES = 512
CACHE_BYTES = 64 * 1024 * 1024
MAX_CACHED_CHARS = 32_000
BYTES_PER_CHAR = 48


@dataclass
class Checked:
    """A parsed document, what its shape says, and its validation per rule set."""

    document: DocumentNode
    problem: GraphQLError | None
    validations: dict[tuple[Any, ...], list[GraphQLError]] = field(default_factory=dict)


DOCUMENTS: BoundedCache[str, Checked] = BoundedCache(CACHE_ENTRIES, CACHE_BYTES)


def is_cached(query: str) -> bool:
    return DOCUMENTS.get(query) is not None


def parsed(query: str, max_tokens: int | None) -> tuple[Checked, bool]:
    """The document of ``query`` and whether it came from the cache (a GraphQLError when it
    does not parse; the token limit's error carries ``TOO_MANY_TOKENS``)."""
    found = DOCUMENTS.get(query)
    if found is not None:
        return found, True
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError as error:
        if "tokens. Parsing aborted." in error.message:
            raise GraphQLError(error.message, extensions={"code": "TOO_MANY_TOKENS"}) from None
        # As Apollo Server names it: a client can tell a typo from a refusal.
        raise GraphQLError(
            error.message,
            source=error.source,
            positions=error.positions,
            extensions={"code": "GRAPHQL_PARSE_FAILED"},
        ) from None
    checked = Checked(document, shape_problem(document))
    if len(query) <= MAX_CACHED_CHARS:
        DOCUMENTS.put(query, checked, len(query) * BYTES_PER_CHAR)
    return checked, False


__all__ = ["CACHE_BYTES", "DOCUMENTS", "MAX_CACHED_CHARS", "Checked", "is_cached", "parsed"]
