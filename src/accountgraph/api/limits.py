"""Query limits as the schema's extensions: error codes for strawberry's depth, alias and
token limiters, introspection switchable off, and the limiter that refuses an operation
whose calculated cost (``api/cost.py``) is over the maximum per operation or over what is
left of the principal's budget per minute (``api/budget.py``).

Subscriptions are not costed (bounded per connection instead).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import ExecutionResult, GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from graphql.validation.validation_context import ValidationContext
from starlette.requests import Request
from strawberry.extensions import AddValidationRules, SchemaExtension
from strawberry.types.graphql import OperationType as StrawberryOperationType

from accountgraph.api.budget import charge
from accountgraph.api.cost import query_cost

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


# -- the cost of an operation against its maximum and the budget --------------------------


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
        if (
            settings is None
            or execution.graphql_document is None
            or execution.operation_type is StrawberryOperationType.SUBSCRIPTION
        ):
            return None
        cost = query_cost(
            execution.schema._schema,
            execution.graphql_document,
            execution.operation_name,
            execution.variables,
        )
        if cost is None:
            return None
        maximum: int = settings.max_query_cost
        report: dict[str, Any] = {"requestedQueryCost": cost, "maximumAvailable": maximum}
        self.report = report
        if cost > maximum:
            return GraphQLError(
                f"Query cost {cost} exceeds the maximum of {maximum}: ask for smaller pages "
                "(first) or fewer nested lists.",
                extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "maximumCost": maximum},
            )
        throttle = await charge(context, cost)
        if throttle is None:
            return None
        report["throttleStatus"] = throttle.status()
        if throttle.allowed:
            return None
        retry = throttle.retry_after_s(cost)
        return rate_limited(
            context,
            retry,
            f"Rate limited: this operation costs {cost}, {math.floor(throttle.available)} of "
            f"{throttle.capacity} per minute is left; retry in {retry} s.",
        )

    def get_results(self) -> dict[str, Any]:
        request = getattr(self.execution_context.context, "request", None)
        if self.report is None or not isinstance(request, Request):
            return {}  # WebSocket messages stay as the protocol has them
        return {"cost": self.report}


def rate_limited(context: Any, retry_after_s: int, message: str) -> GraphQLError:
    """The ``RATE_LIMITED`` refusal: HTTP 429 with ``Retry-After`` on the answer, and the
    error to report."""
    answer_status(context, 429, {"Retry-After": str(retry_after_s)})
    return GraphQLError(
        message, extensions={"code": "RATE_LIMITED", "retryAfterSeconds": retry_after_s}
    )


def answer_status(context: Any, status: int, headers: dict[str, str]) -> None:
    """The HTTP status and headers of the answer, when there is an HTTP answer."""
    response = getattr(context, "response", None)
    if response is not None and hasattr(response, "status_code"):
        response.status_code = status
        response.headers.update(headers)


__all__: list[str] = [
    "IntrospectionSwitch",
    "QueryCostLimiter",
    "answer_status",
    "rate_limited",
    "with_code",
]
