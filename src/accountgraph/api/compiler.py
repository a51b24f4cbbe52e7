"""The read compiler: a tree's subtree answered by one SQL statement that builds its JSON.

graphql-core completes a result field by field in Python (~10 µs each); a 1,000-member
tree is ~30,000 of them. Here, where execution is about to complete an object of a type
that has an *entry* (``Account``), the whole selection below it — aliases, fragments,
``@include``/``@skip`` and variables resolved by graphql-core's own field collection — is
turned into one statement whose single value is that subtree's response JSON, and the
JSON text goes into the response as it is (an ``orjson.Fragment``; ``view.py`` encodes
responses with orjson). Visibility is in the SQL: each field's compiler uses the same
predicates as its loader (``accounts/visibility.py``).

Each area registers the compilers of the fields it defines, next to its types (``field``),
and the kit only walks selections. A selection with any field that has no compiler, a
deferred or streamed fragment, arguments the resolvers would refuse, or an object wider
than ``sqljson.MAX_KEYS`` is completed by the resolvers as before (``NotCompiled``):
the answer is the same either way, which ``tests/test_compiled_reads.py`` checks.

Only objects outside lists are entries (a root field, ``viewer.account``, a mutation
payload's ``account``): an object inside a list that fell back is completed by the
resolvers with its loaders, never by one statement per item.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLObjectType, GraphQLOutputType, GraphQLResolveInfo
from graphql.execution.collect_fields import FieldDetails, collect_subfields
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path
from graphql.type import get_named_type
from prometheus_client import Counter
from sqlalchemy import ColumnElement, Select, Text, cast
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from accountgraph.api import sqljson
from accountgraph.api.cache import BoundedCache
from accountgraph.db import reading
from accountgraph.domain import Principal

log = logging.getLogger(__name__)

COMPILED = Counter(
    "accountgraph_compiled_reads_total",
    "Subtrees answered by one compiled statement, or by the resolvers",
    ["type", "outcome"],
)

CACHED = Counter(
    "accountgraph_compiled_statement_cache_total",
    "Compiled statements found in the per-process cache, or built",
    ["result"],
)
# Keyed by document, position, variables, principal and row (``_key``); bounded.
STATEMENTS: BoundedCache[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = BoundedCache(
    max_entries=2_048, max_bytes=64 * 1024 * 1024
)

FieldDetailsList = list[FieldDetails]


class NotCompiled(Exception):
    """This selection is the resolvers' to answer."""


@dataclass(frozen=True, slots=True)
class Selected:
    """One field of a selection set, as its compiler sees it."""

    key: str  # the response key (alias or name)
    name: str
    args: dict[str, Any]
    details: FieldDetailsList
    type: GraphQLOutputType


FieldCompiler = Callable[["Compilation", Selected, Any], ColumnElement[Any]]
EntryCompiler = Callable[["Compilation", FieldDetailsList, Any], Select[Any]]

_FIELDS: dict[str, dict[str, FieldCompiler]] = {}
_ENTRIES: dict[str, EntryCompiler] = {}


def field(type_name: str, *names: str) -> Callable[[FieldCompiler], FieldCompiler]:
    """Register the compiler of ``type_name``'s fields ``names`` (each area its own)."""

    def register(compiler: FieldCompiler) -> FieldCompiler:
        fields = _FIELDS.setdefault(type_name, {})
        for name in names:
            if name in fields:
                raise ValueError(f"{type_name}.{name} compiled twice")
            fields[name] = compiler
        return compiler

    return register


def entry(type_name: str) -> Callable[[EntryCompiler], EntryCompiler]:
    """Register how to start a statement at an object of ``type_name`` that execution
    already resolved (its row id is on the object)."""

    def register(compiler: EntryCompiler) -> EntryCompiler:
        _ENTRIES[type_name] = compiler
        return compiler

    return register


class Compilation:
    """One subtree being compiled: the principal whose visibility the SQL applies, and
    graphql-core's view of the operation (fragments, variables)."""

    def __init__(self, executor: CompilingExecutionContext, principal: Principal) -> None:
        self.executor = executor
        self.principal = principal
        self._names = 0

    def name(self, base: str) -> str:
        """A name for an alias or derived table, unique in this statement: a selection
        nests the same field (``members`` inside ``members``), and a reused name would
        make an inner subquery's outer reference resolve to the inner row."""
        self._names += 1
        return f"{base}_{self._names}"

    def object(self, type_name: str, details: FieldDetailsList, source: Any) -> ColumnElement[Any]:
        """The JSON object of ``details``' selection on ``type_name``, from ``source``."""
        executor = self.executor
        graphql_type = executor.schema.get_type(type_name)
        if not isinstance(graphql_type, GraphQLObjectType):
            raise NotCompiled(type_name)
        collected = collect_subfields(
            executor.schema,
            executor.fragments,
            executor.variable_values,
            executor.operation,
            graphql_type,
            details,
        )
        if collected.new_defer_usages:
            raise NotCompiled("@defer")
        compilers = _FIELDS.get(type_name, {})
        pairs: list[tuple[str, ColumnElement[Any]]] = []
        for response_key, field_details in collected.grouped_field_set.items():
            node = field_details[0].node
            name = node.name.value
            if name == "__typename":
                pairs.append((response_key, sqljson.text(type_name)))
                continue
            compiler = compilers.get(name)
            if compiler is None:
                raise NotCompiled(f"{type_name}.{name}")
            definition = graphql_type.fields[name]
            args = get_argument_values(
                definition,
                node,
                executor.variable_values,
                field_details[0].fragment_variable_values,
            )
            selected = Selected(response_key, name, args, list(field_details), definition.type)
            pairs.append((response_key, compiler(self, selected, source)))
        try:
            return sqljson.obj(pairs)
        except sqljson.TooWide as wide:
            raise NotCompiled(f"{type_name}: {wide} keys") from None

    def child(self, selected: Selected, source: Any) -> ColumnElement[Any]:
        """The JSON object of an object-typed field's own selection."""
        return self.object(get_named_type(selected.type).name, selected.details, source)


@dataclass(frozen=True, slots=True)
class Reference:
    """An entry's row by id, loaded only if the resolvers must answer it: a resolver that
    knows the row exists and is visible (``viewer.account``: the principal's own) returns
    this instead of loading the row the compiled statement reads anyway. A root field that
    is an entry itself (``accounts``: a page of a connection) has no row id and passes its
    arguments instead (``args``, which the statement cache's key covers through the
    document and the variables)."""

    row_id: int | None
    load: Callable[[], Awaitable[Any]]
    args: tuple[Any, ...] = ()


class CompilingExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, answering entries outside lists with one statement."""

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        entry_compiler = _ENTRIES.get(return_type.name)
        context = info.context
        if (
            entry_compiler is None
            or not getattr(context, "compile_reads", False)
            or _inside_list(path)
        ):
            return self._complete(
                return_type, field_details_list, info, path, result, position_context
            )
        key = self._key(return_type.name, field_details_list, context.principal, result)
        found = None if key is None else STATEMENTS.get(key)
        CACHED.labels("hit" if found is not None else "miss").inc()
        if found is None:
            try:
                statement = entry_compiler(
                    Compilation(self, context.principal), list(field_details_list), result
                )
            except NotCompiled as reason:
                log.debug("resolvers answer %s: %s", return_type.name, reason)
                COMPILED.labels(return_type.name, "fallback").inc()
                return self._complete(
                    return_type, field_details_list, info, path, result, position_context
                )
            found = _plain_sql(statement, context.engine)
            if key is not None:
                STATEMENTS.put(key, found, len(found[0]) + 64 * len(found[1]))
        COMPILED.labels(return_type.name, "compiled").inc()
        return self._run(context.engine, found)

    def _complete(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """The resolvers' way; a ``Reference`` is loaded first."""
        if not isinstance(result, Reference):
            return super().complete_object_value(
                return_type, field_details_list, info, path, result, position_context
            )

        async def loaded() -> Any:
            found = await result.load()
            if found is None:
                return None
            value = super(CompilingExecutionContext, self).complete_object_value(
                return_type, field_details_list, info, path, found, position_context
            )
            return await value if inspect.isawaitable(value) else value

        return loaded()

    def _key(
        self, type_name: str, details: FieldDetailsList, principal: Principal, result: Any
    ) -> tuple[Any, ...] | None:
        """What the statement depends on: the document and where in it, the variables,
        the principal and the entry's row. None where a location is missing."""
        spans = []
        for detail in details:
            loc = detail.node.loc
            if loc is None or detail.fragment_variable_values is not None:
                return None
            spans.append((loc.start, loc.end))
        body = details[0].node.loc.source.body if details[0].node.loc else None
        try:
            variables = orjson.dumps(self.variable_values.coerced, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a value orjson cannot write (an enum member): no caching
            return None
        return (
            type_name,
            body,
            tuple(spans),
            variables,
            principal.kind.value,
            principal.account_id,
            getattr(result, "row_id", None),
        )

    async def _run(self, engine: Any, found: tuple[str, tuple[Any, ...]]) -> Any:
        sql, values = found
        async with reading(engine) as conn:
            text = (await conn.exec_driver_sql(sql, values)).scalar_one()
        return orjson.Fragment(text)


def _plain_sql(statement: Select[Any], engine: Any) -> tuple[str, tuple[Any, ...]]:
    """The statement as the driver takes it: its text and positional values, compiled
    once and kept (``STATEMENTS``), so a repeated read builds and compiles nothing."""
    compiled = statement.compile(
        dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    params = compiled.construct_params()
    names = compiled.positiontup or []
    return str(compiled), tuple(params[name] for name in names)


def enum_value(value: Any) -> str | None:
    """An enum argument as its database string (graphql-core gives the Python member)."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def json_text(statement_value: ColumnElement[Any]) -> ColumnElement[str]:
    """What an entry selects: the JSON as text, so the driver hands it over undecoded."""
    return cast(statement_value, Text)


def _inside_list(path: Path | None) -> bool:
    while path is not None:
        if isinstance(path.key, int):
            return True
        path = path.prev
    return False
