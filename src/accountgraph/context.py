"""Per request: the principal from the bearer token and the loaders (never module-level)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.accounts import tokens
from accountgraph.accounts.loaders import AccountLoaders
from accountgraph.accounts.principals import PrincipalCache
from accountgraph.alerts.loaders import AlertLoaders
from accountgraph.billing.loaders import BillingLoaders
from accountgraph.billing.tax_loaders import TaxLoaders
from accountgraph.billing.voucher_loaders import VoucherLoaders
from accountgraph.config import Settings
from accountgraph.costs.loaders import CostLoaders
from accountgraph.db import reading
from accountgraph.domain import Principal
from accountgraph.funds.loaders import FundsLoaders
from accountgraph.sharing.loaders import SharingLoaders


class Loaders:
    """Every area's loaders for one request, each built on first use (a mutation that
    reads one area builds only that area's); ``clear()`` after a mutation."""

    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        self.engine = engine
        self.principal = principal

    @cached_property
    def accounts(self) -> AccountLoaders:
        return AccountLoaders(self.engine, self.principal)

    @cached_property
    def funds(self) -> FundsLoaders:
        return FundsLoaders(self.engine, self.principal)

    @cached_property
    def sharing(self) -> SharingLoaders:
        return SharingLoaders(self.engine, self.principal)

    @cached_property
    def alerts(self) -> AlertLoaders:
        return AlertLoaders(self.engine, self.principal)

    @cached_property
    def vouchers(self) -> VoucherLoaders:
        return VoucherLoaders(self.engine, self.principal)

    @cached_property
    def billing(self) -> BillingLoaders:
        return BillingLoaders(self.engine, self.principal)

    @cached_property
    def taxes(self) -> TaxLoaders:
        return TaxLoaders(self.engine, self.principal)

    @cached_property
    def costs(self) -> CostLoaders:
        return CostLoaders(self.engine, self.principal)

    def clear(self) -> None:
        """Forget what was loaded: the built loaders are dropped, the next use rebuilds."""
        for name, member in vars(Loaders).items():
            if isinstance(member, cached_property):
                self.__dict__.pop(name, None)


@dataclass
class Context:
    engine: AsyncEngine
    settings: Settings
    principal: Principal | None
    redis: Any = None  # the arq pool: Redis pub/sub for subscriptions
    notifications: Any = None  # the app's NotificationFanout (alerts/fanout.py)
    request: Any = None
    response: Any = None
    connection_params: Any = None  # graphql-transport-ws connection_init payload
    compile_reads: bool = False  # HTTP answers may carry compiled JSON (api/compiler.py)
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            if self.principal is None:
                raise RuntimeError("loaders need a principal; root fields check it first")
            self._loaders = Loaders(self.engine, self.principal)
        return self._loaders


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def resolve_principal(
    engine: AsyncEngine,
    settings: Settings,
    authorization: str | None,
    cache: PrincipalCache | None = None,
) -> Principal | None:
    """The principal of an ``Authorization`` value: from ``cache`` if it holds the token,
    else one indexed lookup (then kept there)."""
    token = bearer(authorization)
    if token is None:
        return None
    digest = tokens.hash_token(token) if cache is not None and cache.enabled else None
    if cache is not None and digest is not None:
        found = cache.get(digest)
        if found is not None:
            return found
    async with reading(engine) as conn:
        principal = await tokens.authenticate(conn, token, operator_token=settings.operator_token)
    if cache is not None and digest is not None and principal is not None:
        cache.put(digest, principal)  # only what was looked up while revocations were heard
    return principal
