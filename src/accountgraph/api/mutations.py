"""How every mutation runs: one transaction, rule errors as data, loaders cleared after.

``mutate`` is the shell of every mutation, written once: the principal, the work in one
transaction (``perform``), then the payload with the objects the work names, loaded as
the viewer sees them (``api/node.py``). The work itself stays explicit in each mutation,
with the field path of every id and amount it converts.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.types.nodes import SelectedField
from strawberry.utils.str_converters import to_camel_case

from accountgraph.api import ids, node
from accountgraph.api.auth import principal_of
from accountgraph.api.errors import DomainError, ErrorCode, NotFound, UserError
from accountgraph.db import transaction
from accountgraph.domain import Principal

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")
Named = int | Mapping[str, int | None]
"""What a mutation's work returns: the row id of its one payload object, or ids by
payload field when the payload names several (a transfer, its master and member)."""
Work = Callable[[AsyncConnection, Principal], Awaitable[Named]]
ATTEMPTS = 3
# PostgreSQL text cannot hold NUL (22021 character_not_in_repertoire, 22P05 untranslatable):
# whatever free-text input carried one is the client's mistake, not ours.
TEXT_REFUSED = {"22021", "22P05"}
# Control characters no free text may hold: C0 but tab, LF and CR; DEL; C1.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


async def perform(
    info: strawberry.Info[Any, Any], work: Callable[[AsyncConnection], Awaitable[T]]
) -> tuple[T | None, list[UserError]]:
    """Run ``work`` in one transaction. A DomainError rolls it back and becomes a user
    error; a constraint the database enforces (a race the service could not see) becomes
    CONFLICT. Either way nothing changed."""
    context = info.context
    refused = control_character_path(info)
    if refused is not None:
        return None, [
            UserError(
                code=ErrorCode.INVALID_INPUT,
                field=refused or None,
                message="Text must not contain control characters (tab and line breaks may).",
            )
        ]
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with transaction(context.engine) as conn:
                    return await work(conn), []
            except DBAPIError as error:
                # A deadlock or serialization failure rolled everything back: run again.
                if _retryable(error) and attempt < ATTEMPTS:
                    log.info("retrying a transaction (%s): %s", attempt, error.orig)
                    continue
                if _sqlstate(error) in TEXT_REFUSED:
                    return None, [
                        UserError(
                            code=ErrorCode.INVALID_INPUT,
                            field=None,
                            message="Text must not contain NUL characters.",
                        )
                    ]
                if isinstance(error, IntegrityError):
                    log.info("constraint refused a write: %s", error.orig)
                    return None, [
                        UserError(
                            code=ErrorCode.CONFLICT,
                            field=None,
                            message="A concurrent change conflicted; try again.",
                        )
                    ]
                if _connection_lost(error):
                    raise _lost(error) from None
                raise
            except OSError as error:  # PostgreSQL unreachable when the transaction began
                raise _lost(error) from None
    except DomainError as error:
        return None, [UserError.of(error)]
    finally:
        context.loaders.clear()
    raise AssertionError("unreachable")  # pragma: no cover


def control_character_path(info: strawberry.Info[Any, Any]) -> list[str] | None:
    """The field path of the first text argument of this mutation (a literal in the
    document or a variable's value) holding a control character other than tab, line feed
    and carriage return: NUL, the other C0 controls, DEL and C1 (an escape sequence in an
    account name reaches every console and log that shows it). ``[]``: not in an input
    object; None: no such text. The path leaves out the ``input`` argument itself, as the
    services' own field paths do."""
    variables = info.variable_values or {}
    for argument in info._raw_info.field_nodes[0].arguments or ():
        path = _first_control(_argument_value(argument.value, variables), [])
        if path is not None:
            return path if argument.name.value == "input" else [argument.name.value, *path]
    return None


def _argument_value(node: Any, variables: Mapping[str, Any]) -> Any:
    """An argument's value from its AST: literals as Python values, variables looked up."""
    kind = node.kind
    if kind == "variable":
        return variables.get(node.name.value)
    if kind == "object_value":
        return {f.name.value: _argument_value(f.value, variables) for f in node.fields}
    if kind == "list_value":
        return [_argument_value(v, variables) for v in node.values]
    if kind == "string_value":
        return node.value
    return None


def _first_control(value: Any, path: list[str]) -> list[str] | None:
    if isinstance(value, str):
        return path if CONTROL.search(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _first_control(item, [*path, key])
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_control(item, [*path, str(index)])
            if found is not None:
                return found
    return None


async def mutate(
    info: strawberry.Info[Any, Any], payload: Callable[..., P], work: Work, **fields: str
) -> P:
    """Run ``work(conn, principal)`` in one transaction and answer ``payload(...)``: each
    keyword names a payload field and the node type loaded into it (``account="Account"``)
    from the id the work returned; ``user_errors`` are the refusals. After a refusal every
    field is null."""
    principal = principal_of(info)
    named, errors = await perform(info, lambda conn: work(conn, principal))
    loaded: dict[str, Any] = dict.fromkeys(fields)
    selected = selected_names(info)
    if named is not None:
        found = named if isinstance(named, Mapping) else {next(iter(fields)): named}
        # Only what the client asked for, all at once (the loaders batch them).
        wanted: list[tuple[str, str, int]] = []
        for field, type_name in fields.items():
            row_id = found.get(field)
            if row_id is not None and to_camel_case(field) in selected:
                wanted.append((field, type_name, row_id))
        for (field, _, _), value in zip(
            wanted,
            await asyncio.gather(*(node.load(info, t, row_id) for _, t, row_id in wanted)),
            strict=True,
        ):
            loaded[field] = value
    return payload(**loaded, user_errors=errors)


def selected_names(info: strawberry.Info[Any, Any]) -> set[str]:
    """The payload's fields the operation selects (through fragments too; a field under
    ``@skip`` counts: loading too much is harmless, too little is not)."""
    names: set[str] = set()

    def walk(selections: list[Any]) -> None:
        for selection in selections:
            if isinstance(selection, SelectedField):
                names.add(selection.name)
            else:  # a fragment spread or an inline fragment
                walk(selection.selections)

    for field in info.selected_fields:
        walk(field.selections)
    return names


def _sqlstate(error: DBAPIError) -> str | None:
    code: str | None = getattr(error.orig, "sqlstate", None) or getattr(
        getattr(error.orig, "__cause__", None), "sqlstate", None
    )
    return code


def _connection_lost(error: DBAPIError) -> bool:
    """The connection died under the transaction (a backend killed, PostgreSQL restarted):
    SQLSTATE classes 08 (connection exception) and 57P (operator intervention)."""
    code = _sqlstate(error) or ""
    return error.connection_invalidated or code.startswith(("08", "57P"))


def _lost(error: BaseException) -> GraphQLError:
    """A clear top-level error (not a masked internal one): the work may not have taken
    effect, and the client's retry with the same idempotency key applies it at most once."""
    log.warning("a mutation's database connection was lost: %s", error)
    return GraphQLError(
        "The database connection was lost before this finished, so it may not have taken "
        "effect. Send it again with the same idempotency key: it applies at most once.",
        extensions={"code": "SERVICE_UNAVAILABLE"},
    )


def _retryable(error: DBAPIError) -> bool:
    """SQLSTATE 40001 (serialization failure) and 40P01 (deadlock detected)."""
    return _sqlstate(error) in {"40001", "40P01"}


def row_id(global_id: str, type_name: str, field: list[str]) -> int:
    """The row id behind a global id of ``type_name``, or NOT_FOUND at ``field``."""
    found = ids.decode_as(global_id, type_name)
    if found is None:
        raise NotFound(field, type_name.lower())
    return found
