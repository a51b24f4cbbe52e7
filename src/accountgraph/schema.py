"""Assembles Query / Mutation from the areas, and ``node(id)`` over every area's types."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from accountgraph.accounts.mutations import AccountMutation
from accountgraph.accounts.queries import NODE_RESOLVERS as ACCOUNT_NODES
from accountgraph.accounts.queries import AccountQuery
from accountgraph.alerts.mutations import AlertMutation, AlertSubscription
from accountgraph.alerts.types import NODE_RESOLVERS as ALERT_NODES
from accountgraph.api import ids
from accountgraph.api.auth import IsAuthenticated
from accountgraph.api.guard import DocumentGuard
from accountgraph.api.limits import IntrospectionSwitch, QueryCostLimiter, with_code
from accountgraph.api.node import Node
from accountgraph.api.scalars import SCALAR_MAP
from accountgraph.billing.mutations import BillingMutation
from accountgraph.billing.types import NODE_RESOLVERS as BILLING_NODES
from accountgraph.billing.voucher_mutations import VoucherMutation
from accountgraph.billing.voucher_types import NODE_RESOLVERS as VOUCHER_NODES
from accountgraph.funds.mutations import FundsMutation
from accountgraph.funds.queries import NODE_RESOLVERS as FUNDS_NODES
from accountgraph.metrics import OperationMetrics
from accountgraph.sharing.mutations import SharingMutation
from accountgraph.sharing.queries import NODE_RESOLVERS as SHARING_NODES
from accountgraph.sharing.queries import SharingQuery

log = logging.getLogger(__name__)

NodeResolver = Callable[[strawberry.Info[Any, Any], int], Awaitable[Node | None]]
NODE_RESOLVERS: dict[str, NodeResolver] = {
    **ACCOUNT_NODES, **FUNDS_NODES, **SHARING_NODES, **ALERT_NODES, **VOUCHER_NODES,
    **BILLING_NODES,
}

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 5_000
# Built once: the document cache (api/documents.py) keys validations by the rule classes.
DEPTH_RULES = with_code(QueryDepthLimiter(max_depth=MAX_DEPTH), "QUERY_TOO_DEEP").validation_rules
ALIAS_RULES = with_code(MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
                        "TOO_MANY_ALIASES").validation_rules


@strawberry.type
class Query(AccountQuery, SharingQuery):
    @strawberry.field(permission_classes=[IsAuthenticated])
    async def node(self, info: strawberry.Info[Any, Any], id: strawberry.ID) -> Node | None:
        """Any object by its global id; null if it does not exist or is not visible."""
        decoded = ids.decode(id)
        if decoded is None or decoded[0] not in NODE_RESOLVERS:
            return None
        return await NODE_RESOLVERS[decoded[0]](info, decoded[1])


@strawberry.type
class Mutation(AccountMutation, FundsMutation, SharingMutation, AlertMutation,
               VoucherMutation, BillingMutation):
    pass


@strawberry.type
class Subscription(AlertSubscription):
    pass


class Schema(strawberry.Schema):
    """Strawberry's schema, logging only what is our fault at ERROR: a client's mistakes
    (syntax, validation, limits) at DEBUG, so that a flood of bad documents cannot flood
    the log; unexpected exceptions with their traceback as before."""

    def process_errors(self, errors: list[GraphQLError],
                       execution_context: ExecutionContext | None = None) -> None:
        unexpected = []
        for error in errors:
            if _unexpected(error):
                unexpected.append(error)
            else:
                log.debug("refused: %s", error.message)
        if unexpected:
            super().process_errors(unexpected, execution_context)


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(auto_camel_case=True, scalar_map=SCALAR_MAP),
    # Factories, not instances: an extension keeps per-request state (strawberry #4369).
    # Limits refuse with extensions.code: QUERY_TOO_DEEP, TOO_MANY_ALIASES, TOO_MANY_TOKENS,
    # DOCUMENT_TOO_COMPLEX,
    # INTROSPECTION_DISABLED (settings), QUERY_TOO_COSTLY and RATE_LIMITED (api/limits.py).
    extensions=[
        lambda: AddValidationRules(DEPTH_RULES),
        lambda: AddValidationRules(ALIAS_RULES),
        IntrospectionSwitch,
        # Parsing (token limit) and validation, cached by entries and bytes; documents too
        # dear to validate refused first (DOCUMENT_TOO_COMPLEX); see api/documents.py.
        lambda: DocumentGuard(max_tokens=MAX_TOKENS),
        QueryCostLimiter,
        OperationMetrics,
        # Unexpected exceptions (SQL, bugs) reach clients as "Unexpected error." only; the
        # errors we raise on purpose are GraphQLErrors with a code and stay as they are.
        lambda: MaskErrors(should_mask_error=_unexpected),
    ],
)


def _unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def sdl() -> str:
    return schema.as_str() + "\n"
