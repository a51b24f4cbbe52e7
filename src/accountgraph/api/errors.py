"""Errors are data: every mutation payload carries ``userErrors`` with a rule's code. The
rules raise ``accountgraph.domain.DomainError``; this module maps it to ``UserError``."""

from __future__ import annotations

import ast
import json
import re

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


# graphql-core's messages for values that do not fit their type speak Python: "not to be
# None", values shown as Python reprs ({'a': 1}, 'str', True). Clients read JSON.
_NOT_NULL = re.compile(r"Expected value of non-null type '([^']+)' not to be None\.")
_NULL_VARIABLE = re.compile(r"^Variable '\$(\w+)' has invalid value: A value of (type '[^']+')")
_BEFORE_VALUE = re.compile(r"(?:: |found |Found )")
_COERCION = re.compile(
    r"^Variable '\$\w+' (has invalid value|of type|of required type|got invalid value)"
)


def in_client_words(error: GraphQLError) -> GraphQLError:
    """``error`` with its message in the client's words (JSON values, ``null``), and a
    variable that does not fit its type coded ``BAD_USER_INPUT`` (as Apollo does). Errors
    that carry a code already (parse, validation, limits, ours) are left as they are."""
    if (error.extensions or {}).get("code"):
        return error
    message = _NOT_NULL.sub(r"A value of type '\1' must not be null.", error.message)
    message = _NULL_VARIABLE.sub(r"Variable '$\1' of \2", message)
    message = _value_as_json(message)
    if message != error.message:
        error.message = message
        error.args = (message,)
    if _COERCION.match(message):
        error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
    return error


def _value_as_json(message: str) -> str:
    """The Python literal that ends ``message`` (after ": " or "found "), as JSON."""
    for separator in _BEFORE_VALUE.finditer(message):
        tail = message[separator.end() :]
        text, end = (tail[:-1], ".") if tail.endswith(".") else (tail, "")
        if not text or text[0] not in "'\"{[(-0123456789TFN":
            continue
        try:
            shown = json.dumps(ast.literal_eval(text), ensure_ascii=False)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return message[: separator.end()] + shown + end
    return message


__all__ = ["DomainError", "ErrorCode", "NotFound", "UserError", "in_client_words", "top_level"]
