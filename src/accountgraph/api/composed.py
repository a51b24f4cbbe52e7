"""The types that ``schema.py`` composes from several areas, for the areas to name.

``Account`` has the fields of every area (accounts: H/P; funds: finance, transfers,
charges; billing: invoices, vouchers, payments…; alerts: quotaAlert, notifications;
sharing: resources, groups), and ``FinancialState`` funds' balances plus billing's coupon
and voucher counts. Each area declares its part next to its own types; the one GraphQL
type is assembled in ``schema.py``. Areas name the assembled types through the lazy
references below (``AccountRef`` …), build instances of the accounts area's
``AccountCore`` (or funds' ``FinancialStateCore``), and load other areas' objects through
the node registry (``api/node.py``) — never by importing another area's GraphQL.

For the type checker the references are the cores (what resolvers really return).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from accountgraph.api import node

Info = strawberry.Info[Any, Any]
ASSEMBLY = "accountgraph.schema"

# A reference must not share the name it refers to: typing would resolve "Account" to
# the reference itself, forever.
if TYPE_CHECKING:
    from accountgraph.accounts.account import AccountCore as AccountRef
    from accountgraph.accounts.types import BillTo as BillToRef
    from accountgraph.accounts.types import Site as SiteRef
    from accountgraph.costs.types import Budget as BudgetRef
    from accountgraph.funds.mutations import CostTagInput as CostTagInputRef
    from accountgraph.funds.types import CostTag as CostTagRef
    from accountgraph.funds.types import FinancialStateCore as FinancialStateRef
    from accountgraph.sharing.types import ResourceType as ResourceTypeRef
    from accountgraph.sharing.types import UserGroup as UserGroupRef
else:
    AccountRef = Annotated["Account", strawberry.lazy(ASSEMBLY)]  # noqa: F821
    BillToRef = Annotated["BillTo", strawberry.lazy(ASSEMBLY)]  # noqa: F821
    SiteRef = Annotated["Site", strawberry.lazy(ASSEMBLY)]  # noqa: F821
    FinancialStateRef = Annotated["FinancialState", strawberry.lazy(ASSEMBLY)]  # noqa: F821
    # C1-C5: the cost center names funds' tags and sharing's resource types; alerts names
    # the cost center's budgets (Notification.budget).
    BudgetRef = Annotated["Budget", strawberry.lazy(ASSEMBLY)]  # noqa: F821
    CostTagRef = Annotated["CostTag", strawberry.lazy(ASSEMBLY)]  # noqa: F821
    CostTagInputRef = Annotated["CostTagInput", strawberry.lazy(ASSEMBLY)]  # noqa: F821
    ResourceTypeRef = Annotated["ResourceType", strawberry.lazy(ASSEMBLY)]  # noqa: F821
    UserGroupRef = Annotated["UserGroup", strawberry.lazy(ASSEMBLY)]  # noqa: F821


def built_from(core: type) -> Callable[[object, object], bool]:
    """``is_type_of`` for an assembled type: the areas build instances of its core."""

    def is_type_of(obj: object, _info: object) -> bool:
        return isinstance(obj, core)

    return is_type_of


async def account(info: Info, row_id: int) -> AccountRef | None:
    """The account if the viewer sees it (at least by name), else None."""
    found: AccountRef | None = await node.load(info, "Account", row_id)
    return found


async def accounts(info: Info, row_ids: list[int]) -> list[AccountRef]:
    """The visible ones of these accounts, in one batch."""
    found: list[AccountRef] = await node.load_many(info, "Account", row_ids)
    return found


async def seen_account(info: Info, row_id: int) -> AccountRef:
    """An account the viewer must see because it sees an object that names it."""
    found = await account(info, row_id)
    if found is None:  # pragma: no cover - whoever sees the object sees its accounts
        raise LookupError("account not visible")
    return found


async def site(info: Info, row_id: int) -> SiteRef | None:
    found: SiteRef | None = await node.load(info, "Site", row_id)
    return found


async def bill_to(info: Info, row_id: int) -> BillToRef | None:
    found: BillToRef | None = await node.load(info, "BillTo", row_id)
    return found


async def budget(info: Info, row_id: int) -> BudgetRef | None:
    found: BudgetRef | None = await node.load(info, "Budget", row_id)
    return found


async def user_group(info: Info, row_id: int) -> UserGroupRef | None:
    found: UserGroupRef | None = await node.load(info, "UserGroup", row_id)
    return found


__all__ = [
    "AccountRef",
    "BillToRef",
    "BudgetRef",
    "CostTagInputRef",
    "CostTagRef",
    "FinancialStateRef",
    "ResourceTypeRef",
    "SiteRef",
    "UserGroupRef",
    "account",
    "accounts",
    "bill_to",
    "budget",
    "built_from",
    "seen_account",
    "site",
    "user_group",
]
