"""Assembles Query / Mutation from the areas, and ``node(id)`` over every area's types."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from accountgraph.accounts import compiled as _accounts_compiled  # noqa: F401 - registers
from accountgraph.accounts.account import AccountCore, AccountTree
from accountgraph.accounts.mutations import AccountMutation
from accountgraph.accounts.queries import AccountQuery
from accountgraph.accounts.types import BillTo, Link, Site
from accountgraph.alerts import compiled as _alerts_compiled  # noqa: F401 - registers
from accountgraph.alerts.mutations import AlertMutation, AlertSubscription
from accountgraph.alerts.types import AlertsAccount
from accountgraph.api import ids, node
from accountgraph.api.auth import IsAuthenticated
from accountgraph.api.compiler import CompilingExecutionContext
from accountgraph.api.composed import built_from
from accountgraph.api.guard import DocumentGuard
from accountgraph.api.limits import IntrospectionSwitch, QueryCostLimiter, with_code
from accountgraph.api.node import Node
from accountgraph.api.scalars import SCALAR_MAP
from accountgraph.audit.mutations import audited
from accountgraph.audit.queries import AuditQuery
from accountgraph.billing import compiled as _billing_compiled  # noqa: F401 - registers
from accountgraph.billing import payment_types  # noqa: F401 - registers its nodes
from accountgraph.billing.account import BillingAccount, BillingFinance
from accountgraph.billing.mutations import BillingMutation
from accountgraph.billing.queries import BillingQuery
from accountgraph.billing.tax_mutations import TaxMutation
from accountgraph.billing.voucher_mutations import VoucherMutation
from accountgraph.costs.mutations import CostMutation
from accountgraph.costs.types import Budget, CostsAccount
from accountgraph.funds import compiled as _funds_compiled  # noqa: F401 - registers
from accountgraph.funds import queries as funds_queries  # noqa: F401 - registers its nodes
from accountgraph.funds.mutations import CostTagInput, FundsMutation
from accountgraph.funds.types import CostTag, FinancialStateCore, FundsAccount
from accountgraph.metrics import OperationMetrics, OperationTracing
from accountgraph.sharing.mutations import SharingMutation
from accountgraph.sharing.queries import SharingQuery
from accountgraph.sharing.types import ResourceType, SharingAccount, UserGroup
from accountgraph.tracing import enabled as tracing_enabled

log = logging.getLogger(__name__)


@strawberry.type(name="Account")
class Account(
    AccountCore,
    FundsAccount,
    BillingAccount,
    AlertsAccount,
    SharingAccount,
    CostsAccount,
    AccountTree,
):
    """The one Account: each area's fields, in the order of the published schema."""

    is_type_of = staticmethod(built_from(AccountCore))


@strawberry.type(name="FinancialState")
class FinancialState(FinancialStateCore, BillingFinance):
    is_type_of = staticmethod(built_from(FinancialStateCore))


MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 5_000
# Built once: the document cache (api/documents.py) keys validations by the rule classes.
DEPTH_RULES = with_code(QueryDepthLimiter(max_depth=MAX_DEPTH), "QUERY_TOO_DEEP").validation_rules
ALIAS_RULES = with_code(
    MaxAliasesLimiter(max_alias_count=MAX_ALIASES), "TOO_MANY_ALIASES"
).validation_rules


@strawberry.type
class Query(AccountQuery, SharingQuery, AuditQuery, BillingQuery):
    @strawberry.field(permission_classes=[IsAuthenticated])
    async def node(self, info: strawberry.Info[Any, Any], id: strawberry.ID) -> Node | None:
        """Any object by its global id; null if it does not exist or is not visible."""
        decoded = ids.decode(id)
        if decoded is None or not node.registered(decoded[0]):
            return None
        found: Node | None = await node.load(info, decoded[0], decoded[1])
        return found


# Every Mutation field, also one added later, writes an audit row (audit/mutations.py).
@audited
@strawberry.type
class Mutation(
    AccountMutation,
    FundsMutation,
    SharingMutation,
    AlertMutation,
    VoucherMutation,
    BillingMutation,
    CostMutation,
    TaxMutation,
):
    pass


@strawberry.type
class Subscription(AlertSubscription):
    pass


class Schema(strawberry.Schema):
    """Strawberry's schema, logging only what is our fault at ERROR: a client's mistakes
    (syntax, validation, limits) at DEBUG, so that a flood of bad documents cannot flood
    the log; unexpected exceptions with their traceback as before."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        unexpected = []
        for error in errors:
            if _unexpected(error):
                unexpected.append(error)
            else:
                log.debug("refused: %s", error.message)
        if unexpected:
            super().process_errors(unexpected, execution_context)

    def get_extensions(self, sync: bool = False) -> list[SchemaExtension]:
        """The extensions below, and the operation's span first while tracing is on (off,
        an operation pays nothing for it)."""
        found = super().get_extensions(sync)
        if tracing_enabled():
            found.insert(0, OperationTracing())
        return found


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(auto_camel_case=True, scalar_map=SCALAR_MAP),
    # Factories, not instances: an extension keeps per-request state (strawberry #4369).
    # Limits refuse with extensions.code: QUERY_TOO_DEEP, TOO_MANY_ALIASES, TOO_MANY_TOKENS,
    # DOCUMENT_TOO_COMPLEX,
    # INTROSPECTION_DISABLED (settings), QUERY_TOO_COSTLY and RATE_LIMITED (api/limits.py).
    execution_context_class=CompilingExecutionContext,
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


__all__ = [
    "Account",
    "BillTo",
    "Budget",
    "CostTag",
    "CostTagInput",
    "FinancialState",
    "Link",
    "ResourceType",
    "Schema",
    "Site",
    "UserGroup",
    "schema",
    "sdl",
]
