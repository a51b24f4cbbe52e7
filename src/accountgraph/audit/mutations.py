"""The one hook that audits every mutation: a field extension on each root field of
``Mutation``, put there by ``audited`` when the schema is assembled (``schema.py``), so
that a mutation added later, by any area, is audited without anyone remembering to.

It is the outermost extension of the field: it sees the permission checks' refusals
(``ERROR`` with their code), the rules' refusals (``REFUSED`` with the payload's
``userErrors`` codes) and the accepted mutations (``OK``), each with the global ids of the
payload's objects (none after a whole refusal; a batch refused in part names those it
changed). The row is written after the mutation's own transaction, in one of
its own (one INSERT); a request without a principal is refused before anything runs and
is not audited (no principal to record). Queries are untouched: the extension is only on
``Mutation``'s fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import secrets
from collections.abc import Iterator
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.schema.name_converter import NameConverter
from strawberry.types.base import get_object_definition
from strawberry.types.unset import UNSET

from accountgraph import logs
from accountgraph.audit import log as audit
from accountgraph.domain import Principal

log = logging.getLogger(__name__)

Info = strawberry.Info[Any, Any]
T = TypeVar("T")
ENV_OPERATOR = "operator:env"  # the ACCOUNTGRAPH_OPERATOR_TOKEN principal (no token row)
SEVERITY = {"OK": 0, "REFUSED": 1, "ERROR": 2}


class Audited(FieldExtension):
    """Writes one audit row per call of the field it is on."""

    async def resolve_async(self, next_: Any, source: Any, info: Info, **kwargs: Any) -> Any:
        principal: Principal | None = info.context.principal
        if principal is None:  # refused as UNAUTHENTICATED before anything runs
            return await _awaited(next_(source, info, **kwargs))
        try:
            result = await _awaited(next_(source, info, **kwargs))
        except Exception as error:
            await _write(info, principal, kwargs, "ERROR", _codes_of(error), ())
            raise
        codes = [error.code.value for error in getattr(result, "user_errors", None) or ()]
        outcome = "REFUSED" if codes else "OK"
        # A batch refused in part still names the accounts it changed.
        await _write(info, principal, kwargs, outcome, codes, tuple(_object_ids(result)))
        return result


def audited(mutation: type[T]) -> type[T]:
    """Put ``Audited`` on every field of the ``Mutation`` type (outermost: last)."""
    definition = get_object_definition(mutation, strict=True)
    for field in definition.fields:
        if not any(isinstance(extension, Audited) for extension in field.extensions):
            field.extensions.append(Audited())
    return mutation


def is_audited(field: Any) -> bool:
    return any(isinstance(extension, Audited) for extension in field.extensions)


async def _awaited(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _codes_of(error: Exception) -> list[str]:
    if isinstance(error, GraphQLError):
        code = (error.extensions or {}).get("code")
        return [str(code)] if code else []
    return []


def _object_ids(result: Any) -> Iterator[str]:
    """The global ids of the payload's objects (a Node's ``id``; lists of them)."""
    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        return
    for field in dataclasses.fields(result):
        if field.name == "user_errors":
            continue
        value = getattr(result, field.name, None)
        for item in value if isinstance(value, (list, tuple)) else (value,):
            object_id = getattr(item, "id", None)
            if isinstance(object_id, str) and not isinstance(item, str):
                yield object_id


def _input(info: Info, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The field's arguments with their GraphQL names (as the client sent them), secrets
    removed."""
    names = info.schema.config.name_converter
    plain = {names.apply_naming_config(key): _plain(value, names) for key, value in kwargs.items()}
    redacted: dict[str, Any] = audit.redact(plain)
    return redacted


def _plain(value: Any, names: NameConverter) -> Any:
    """Strawberry input objects as dicts by GraphQL name (fields left unset omitted)."""
    if isinstance(value, (list, tuple)):
        return [_plain(item, names) for item in value]
    definition = get_object_definition(value)
    if definition is None:
        return value
    return {
        names.get_graphql_name(field): _plain(found, names)
        for field in definition.fields
        if (found := getattr(value, field.python_name, UNSET)) is not UNSET
    }


def _bearer(context: Any) -> str | None:
    """The token the principal came from: a WebSocket's ``connection_init`` (view.py), else
    the HTTP ``Authorization`` header."""
    params = getattr(context, "connection_params", None)
    value = params.get("Authorization") if isinstance(params, dict) else None
    headers = getattr(getattr(context, "request", None), "headers", None)
    if value is None and headers is not None:
        value = headers.get("authorization")
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _token_id(info: Info, principal: Principal) -> str | None:
    """Which token: the first 16 hex digits of its SHA-256 (api_tokens.token_hash)."""
    if principal.actor == ENV_OPERATOR:
        return None  # the env token may be a weak string: not even a hash of it
    token = _bearer(info.context)
    return None if token is None else hashlib.sha256(token.encode()).hexdigest()[:16]


def _client_address(info: Info, scope: logs.Scope | None) -> str | None:
    client = getattr(getattr(info.context, "request", None), "client", None)
    host = getattr(client, "host", None)
    if isinstance(host, str):
        return host
    return None if scope is None else scope.client_address


async def _write(
    info: Info,
    principal: Principal,
    kwargs: dict[str, Any],
    outcome: str,
    codes: list[str],
    object_ids: tuple[str, ...],
) -> None:
    scope = logs.current()
    if scope is not None and SEVERITY[outcome] > SEVERITY.get(scope.outcome or "", -1):
        scope.outcome = outcome  # the request's log line: its worst mutation outcome
    operation = info._raw_info.operation.name
    try:
        entry = audit.Entry(
            principal=principal,
            field=info.field_name,
            outcome=outcome,
            input=_input(info, kwargs),
            request_id=scope.request_id if scope and scope.request_id else secrets.token_hex(16),
            operation_name=operation.value if operation is not None else None,
            error_codes=codes,
            object_ids=object_ids,
            client_address=_client_address(info, scope),
            token_id=_token_id(info, principal),
        )
        await audit.record(info.context.engine, entry)
    except Exception:  # the mutation's own outcome stands; the gap is logged loudly
        log.exception("audit row not written for %s (%s)", info.field_name, outcome)


__all__ = ["Audited", "audited", "is_audited"]
