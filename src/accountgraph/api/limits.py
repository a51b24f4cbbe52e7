"""Query limits: error codes for the depth, alias and token limiters, introspection
switchable off, and a calculated query cost (in the manner of Shopify's) with a maximum
per operation and a per-principal budget per minute kept in Redis.

Cost of an operation, walked over its selections (fragments and inline fragments
included, aliases counted as the fields they are) against the schema:

- a field whose type is an object, interface or union costs ``OBJECT_COST`` (1) plus its
  children; scalars and enums cost 0;
- a connection (a field with a ``first`` argument returning ``…Connection``) multiplies
  what its ``edges`` (or ``nodes``) select by its page size: ``first``, or
  ``DEFAULT_PAGE`` (50) when absent, capped at ``MAX_PAGE`` (500);
- any other list of objects (``sites``, ``billTos``, ``invitations`` …) counts an assumed
  ``LIST_SIZE`` (10) items;
- over an interface or union (``node(id)``), the dearest possible type counts;
- each mutation field adds ``MUTATION_COST`` (10) on top of its payload's cost.

So ``accounts(first: 100) { edges { node { id sites { name } } } pageInfo { hasNextPage } }``
costs 1 + 100 * (1 + 1 + 10 * 1) + 1 = 1,202. ``@skip``/``@include`` are not evaluated
(the field counts). Subscriptions are not costed (bounded per connection instead).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_abstract_type,
    is_list_type,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from graphql.utilities import get_operation_ast, value_from_ast_untyped
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from graphql.validation.validation_context import ValidationContext
from starlette.requests import Request
from strawberry.extensions import AddValidationRules, SchemaExtension
from strawberry.types.graphql import OperationType as StrawberryOperationType

from accountgraph.api.connections import DEFAULT_PAGE, MAX_PAGE

log = logging.getLogger(__name__)

OBJECT_COST = 1
LIST_SIZE = 10
MUTATION_COST = 10
REDIS_TIMEOUT_S = 0.5
BUCKET_KEY = "accountgraph:cost:"

# -- error codes for strawberry's limiters ------------------------------------------------


class _CodingContext:
    """A validation context whose reported errors carry ``extensions.code``."""

    def __init__(self, context: ValidationContext, code: str) -> None:
        self._context = context
        self._code = code

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {**(error.extensions or {}), "code": self._code}
        self._context.report_error(error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def coded(rule: type[ASTValidationRule], code: str) -> type[ASTValidationRule]:
    """``rule``, reporting its errors with ``extensions.code = code``."""

    class Coded(rule):  # type: ignore[valid-type, misc]
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(_CodingContext(context, code))

    Coded.__name__ = Coded.__qualname__ = f"{rule.__name__}_{code}"
    return Coded


def with_code(limiter: AddValidationRules, code: str) -> AddValidationRules:
    """A strawberry limiter (``QueryDepthLimiter``, ``MaxAliasesLimiter``) whose errors
    carry ``extensions.code``."""
    limiter.validation_rules = [coded(rule, code) for rule in limiter.validation_rules]
    return limiter


INTROSPECTION_OFF_RULE = coded(NoSchemaIntrospectionCustomRule, "INTROSPECTION_DISABLED")


class IntrospectionSwitch(SchemaExtension):
    """Refuses ``__schema``/``__type`` when the app's settings turn introspection off
    (``ACCOUNTGRAPH_INTROSPECTION=false``); ``__typename`` stays allowed."""

    def on_operation(self) -> Iterator[None]:
        settings = getattr(self.execution_context.context, "settings", None)
        if settings is not None and not settings.introspection_enabled:
            context = self.execution_context
            context.validation_rules = (*context.validation_rules, INTROSPECTION_OFF_RULE)
        yield


# -- the cost of an operation -------------------------------------------------------------


def query_cost(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None,
               variables: Mapping[str, Any] | None = None) -> int | None:
    """The cost of the operation ``operation_name`` of ``document`` (see the module's
    docstring); ``None`` when there is no such operation."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    root = schema.get_root_type(operation.operation)
    if root is None:
        return None
    fragments = {definition.name.value: definition for definition in document.definitions
                 if isinstance(definition, FragmentDefinitionNode)}
    # A variable the request leaves out counts with its declared default, as it runs.
    values = {definition.variable.name.value: value_from_ast_untyped(definition.default_value)
              for definition in operation.variable_definitions or ()
              if definition.default_value is not None}
    values.update(variables or {})
    walk = _Walk(schema, fragments, values)
    cost = walk.selections(operation.selection_set, root, None)
    if operation.operation is OperationType.MUTATION:
        cost += MUTATION_COST * walk.fields_of(operation.selection_set, root)
    return cost


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    # fragment, concrete type, page → cost: a fragment spread many times is walked once
    memo: dict[tuple[str, str, int | None], int] = field(default_factory=dict)
    visiting: set[str] = field(default_factory=set)

    def selections(self, selection_set: SelectionSetNode, parent: Any, page: int | None
                   ) -> int:
        if is_abstract_type(parent):
            return max((self.concrete(selection_set, possible, page)
                        for possible in self.schema.get_possible_types(parent)), default=0)
        return self.concrete(selection_set, parent, page) \
            if isinstance(parent, GraphQLObjectType) else 0

    def concrete(self, selection_set: SelectionSetNode, parent: GraphQLObjectType,
                 page: int | None) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                if self.applies(selection.type_condition, parent):
                    total += self.concrete(selection.selection_set, parent, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.spread(selection.name.value, parent, page)
        return total

    def spread(self, name: str, parent: GraphQLObjectType, page: int | None) -> int:
        fragment = self.fragments.get(name)
        if fragment is None or name in self.visiting \
                or not self.applies(fragment.type_condition, parent):
            return 0
        key = (name, parent.name, page)
        if key not in self.memo:
            self.visiting.add(name)
            self.memo[key] = self.concrete(fragment.selection_set, parent, page)
            self.visiting.discard(name)
        return self.memo[key]

    def applies(self, condition: NamedTypeNode | None, parent: GraphQLObjectType) -> bool:
        if condition is None or condition.name.value == parent.name:
            return True
        wanted = self.schema.get_type(condition.name.value)
        return is_abstract_type(wanted) and self.schema.is_sub_type(wanted, parent)

    def field(self, node: FieldNode, parent: GraphQLObjectType, page: int | None) -> int:
        name = node.name.value
        output: GraphQLOutputType
        arguments: Mapping[str, Any]
        if name == "__schema":
            output, arguments = SchemaMetaFieldDef.type, {}
        elif name == "__type":
            output, arguments = TypeMetaFieldDef.type, {}
        elif name in parent.fields:
            output, arguments = parent.fields[name].type, parent.fields[name].args
        else:
            return 0  # __typename, or a field validation refuses anyway
        named = get_named_type(output)
        if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType):
            return 0
        multiplier, child_page = 1, None
        if named.name.endswith("Connection") and "first" in arguments:
            child_page = self.page_size(node)
        elif is_list_type(get_nullable_type(output)):
            multiplier = page if page is not None and name in ("edges", "nodes") else LIST_SIZE
        children = self.selections(node.selection_set, named, child_page) \
            if node.selection_set else 0
        return multiplier * (OBJECT_COST + children)

    def page_size(self, node: FieldNode) -> int:
        value: Any = None
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value)
        if not isinstance(value, int) or isinstance(value, bool):
            return DEFAULT_PAGE
        return max(0, min(value, MAX_PAGE))

    def fields_of(self, selection_set: SelectionSetNode, parent: GraphQLObjectType) -> int:
        """How many root fields (mutations) the operation runs, fragments included."""
        count = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                count += not selection.name.value.startswith("__")
            elif isinstance(selection, InlineFragmentNode):
                count += self.fields_of(selection.selection_set, parent)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and selection.name.value not in self.visiting:
                    self.visiting.add(selection.name.value)
                    count += self.fields_of(fragment.selection_set, parent)
                    self.visiting.discard(selection.name.value)
        return count


# -- the per-principal budget in Redis ----------------------------------------------------

# A token bucket per principal: holds up to ``capacity`` (the budget per minute), refills
# at capacity / 60 per second, a request takes its cost or is refused taking nothing; with
# ``debt`` (what a refused document costs) it is taken anyway, down to -capacity, and the
# client waits until the bucket has refilled.
# Redis's clock, so every gateway replica agrees. Returns {allowed, tokens left}.
BUCKET_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
elseif ARGV[4] == '1' then
  tokens = math.max(-capacity, tokens - cost)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class Throttle:
    allowed: bool
    available: float
    capacity: int
    per_second: float

    def status(self) -> dict[str, Any]:
        return {"maximumAvailable": self.capacity,
                "currentlyAvailable": math.floor(self.available),
                "restoreRate": round(self.per_second, 3)}

    def retry_after_s(self, cost: int) -> int:
        return max(1, math.ceil((cost - self.available) / self.per_second))


async def take(redis: Any, principal_key: str, cost: int, per_minute: int, *,
               debt: bool = False) -> Throttle | None:
    """Take ``cost`` from the principal's bucket; ``None`` when Redis does not answer in
    time (the caller lets the request through: fail open)."""
    per_second = per_minute / 60
    try:
        script = redis.register_script(BUCKET_SCRIPT)
        allowed, available = await asyncio.wait_for(
            script(keys=[BUCKET_KEY + principal_key],
                   args=[per_minute, per_second, cost, "1" if debt else "0"]),
            REDIS_TIMEOUT_S)
    except Exception as error:  # Redis down or slow: serve, unmetered
        log.warning("rate limit not checked (failing open): %s", error)
        return None
    left = float(available.decode() if isinstance(available, bytes) else available)
    return Throttle(bool(allowed), left, per_minute, per_second)


def principal_key(context: Any) -> str:
    """Whose budget: the account (all its tokens share it), the operators, or an
    anonymous client by address (the peer's, or from X-Forwarded-For only when the peer is
    one of ``ACCOUNTGRAPH_TRUSTED_PROXIES``)."""
    principal = getattr(context, "principal", None)
    if principal is not None:
        return str(principal.key)
    request = getattr(context, "request", None)
    client = getattr(request, "client", None)
    return f"anonymous:{client.host if client is not None else 'unknown'}"


class QueryCostLimiter(SchemaExtension):
    """Before execution: the operation's cost against ``settings.max_query_cost``
    (``QUERY_TOO_COSTLY``) and the principal's budget per minute in Redis
    (``RATE_LIMITED``, HTTP 429 with ``Retry-After``); refused, nothing runs. Every HTTP
    answer that got this far reports ``extensions.cost``."""

    def __init__(self) -> None:
        super().__init__()
        self.report: dict[str, Any] | None = None

    async def on_execute(self) -> AsyncIterator[None]:
        refusal = await self._check()
        if refusal is not None:
            self.execution_context.result = ExecutionResult(data=None, errors=[refusal])
        yield

    async def _check(self) -> GraphQLError | None:
        execution = self.execution_context
        context = execution.context
        settings = getattr(context, "settings", None)
        if settings is None or execution.graphql_document is None \
                or execution.operation_type is StrawberryOperationType.SUBSCRIPTION:
            return None
        cost = query_cost(execution.schema._schema, execution.graphql_document,
                          execution.operation_name, execution.variables)
        if cost is None:
            return None
        maximum: int = settings.max_query_cost
        report: dict[str, Any] = {"requestedQueryCost": cost, "maximumAvailable": maximum}
        self.report = report
        if cost > maximum:
            return GraphQLError(
                f"Query cost {cost} exceeds the maximum of {maximum}: ask for smaller pages "
                "(first) or fewer nested lists.",
                extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "maximumCost": maximum})
        per_minute: int = settings.rate_limit_cost_per_minute
        if per_minute <= 0 or getattr(context, "redis", None) is None:
            return None
        throttle = await take(context.redis, principal_key(context), cost, per_minute)
        if throttle is None:
            return None
        report["throttleStatus"] = throttle.status()
        if throttle.allowed:
            return None
        retry = throttle.retry_after_s(cost)
        answer_status(context, 429, {"Retry-After": str(retry)})
        return GraphQLError(
            f"Rate limited: this operation costs {cost}, {math.floor(throttle.available)} of "
            f"{per_minute} per minute is left; retry in {retry} s.",
            extensions={"code": "RATE_LIMITED", "retryAfterSeconds": retry})

    def get_results(self) -> dict[str, Any]:
        request = getattr(self.execution_context.context, "request", None)
        if self.report is None or not isinstance(request, Request):
            return {}  # WebSocket messages stay as the protocol has them
        return {"cost": self.report}


def answer_status(context: Any, status: int, headers: dict[str, str]) -> None:
    response = getattr(context, "response", None)
    if response is not None and hasattr(response, "status_code"):
        response.status_code = status
        response.headers.update(headers)


__all__: list[str] = [
    "IntrospectionSwitch", "QueryCostLimiter", "answer_status", "principal_key", "query_cost",
    "take", "with_code",
]
