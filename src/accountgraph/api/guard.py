"""The extension that parses and validates every document (``api/documents.py``,
``api/shape.py``, ``api/validation.py``) and keeps refused documents from costing
anything but the sender's budget:

- parse: from the bounded cache, or parsed with the token limit (``TOO_MANY_TOKENS``);
- a text the cache does not hold is first charged ``VALIDATION_COST`` to the
  principal's (or anonymous address's) rate-limit bucket, before it is parsed;
- validate: a document whose shape is too dear is refused (``DOCUMENT_TOO_COMPLEX``)
  before graphql-core's rules run; a refused document (by shape or by validation) is
  charged ``REFUSED_COST`` (or a 120th of the budget per minute, if more) even into
  debt, so a client whose documents keep being refused is answered ``RATE_LIMITED``
  without its next ones being parsed;
- a subscription sent over HTTP is told to use the WebSocket
  (``SUBSCRIPTION_NEEDS_WEBSOCKET``);
- with introspection off, no error names the schema ("Did you mean …?"): validation runs
  with ``hide_suggestions`` and errors raised later (variable coercion) are stripped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from accountgraph.api.budget import charge
from accountgraph.api.documents import is_cached, parsed
from accountgraph.api.limits import answer_status, rate_limited
from accountgraph.api.validation import coded, validated, without_suggestion

VALIDATION_COST = 10
# A refused document costs at least this, and at least 1/REFUSED_PER_MINUTE of the budget
# per minute: a client may have about that many documents refused a minute.
REFUSED_COST = 5_000
REFUSED_PER_MINUTE = 120


class DocumentGuard(SchemaExtension):
    def __init__(self, max_tokens: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.cached = False
        self.checked: Any = None

    async def on_parse(self) -> AsyncIterator[None]:
        """A text the cache does not hold is charged before it is parsed: a client whose
        bucket is in debt (its documents were refused) is not even parsed."""
        context = self.execution_context
        if context.graphql_document is None and context.query:
            if not is_cached(context.query):
                refused = await self._charge(VALIDATION_COST)
                if refused is not None:
                    raise refused
            self.checked, self.cached = parsed(context.query, self.max_tokens)
            context.graphql_document = self.checked.document
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        if self.checked is None or context.pre_execution_errors is not None:
            yield
            return
        hide = not _introspection_enabled(context.context)
        rules = tuple(context.validation_rules)
        fresh = not self.cached or (rules, hide) not in self.checked.validations
        errors: list[GraphQLError]
        if self.checked.problem is not None:
            errors = [self.checked.problem]
        elif _subscription_over_http(context):
            answer_status(context.context, 400, {})
            errors = [
                GraphQLError(
                    "Subscriptions are served over WebSocket (graphql-transport-ws) at /graphql, "
                    "not over HTTP.",
                    extensions={"code": "SUBSCRIPTION_NEEDS_WEBSOCKET"},
                )
            ]
        else:
            errors = validated(context.schema._schema, self.checked, rules, hide_suggestions=hide)
            errors = [coded(error) for error in errors]
        if errors and fresh:
            await self._charge(
                max(REFUSED_COST, self._per_minute() // REFUSED_PER_MINUTE), debt=True
            )
        context.pre_execution_errors = errors
        yield

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context
        result = context.result
        if result is not None and result.errors and not _introspection_enabled(context.context):
            result.errors = [without_suggestion(error) for error in result.errors]

    def _per_minute(self) -> int:
        settings = getattr(self.execution_context.context, "settings", None)
        return int(getattr(settings, "rate_limit_cost_per_minute", 0))

    async def _charge(self, cost: int, *, debt: bool = False) -> GraphQLError | None:
        """Take ``cost`` from the client's bucket (with ``debt`` even past empty); the
        refusal when there is not enough."""
        context = self.execution_context.context
        throttle = await charge(context, cost, debt=debt)
        if throttle is None or throttle.allowed:
            return None
        retry = throttle.retry_after_s(cost)
        return rate_limited(context, retry, f"Rate limited: retry in {retry} s.")


def _subscription_over_http(execution: Any) -> bool:
    try:
        subscription = execution.operation_type is OperationType.SUBSCRIPTION
    except RuntimeError:  # no such operation: validation says so
        return False
    return subscription and isinstance(getattr(execution.context, "request", None), Request)


def _introspection_enabled(context: Any) -> bool:
    settings = getattr(context, "settings", None)
    return settings is None or bool(settings.introspection_enabled)


__all__ = ["REFUSED_COST", "VALIDATION_COST", "DocumentGuard"]
