"""Per-request batch loading of vouchers, coupons, voucher pools, payment methods and
payments (V1-V3, B5, F8), each query filtered by visibility (P2-P4).

Vouchers, coupons, pools and payments are finances (``sees_finance``: a member's need
VIEW_FINANCE); payment methods are account details (``sees_details``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.accounts.public import (
    account_ids,
    has_active_master,
    sees_details,
    sees_finance,
    sees_name,
)
from accountgraph.api import keyset
from accountgraph.api.batching import AreaLoaders, by_key, grouped
from accountgraph.api.keyset import Page
from accountgraph.billing.models import (
    coupons,
    payment_methods,
    voucher_members,
    voucher_pools,
    vouchers,
)
from accountgraph.domain import ZERO, Principal
from accountgraph.funds.public import payments_by_id, payments_of

Row = Any


@dataclass(frozen=True, slots=True)
class PaymentsKey:
    account_id: int
    limit: int
    after: int | None


@dataclass(frozen=True, slots=True)
class Counts:
    """F1: usable coupons and vouchers (something left, valid now)."""

    coupons: int
    vouchers: int


class VoucherLoaders(AreaLoaders):
    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        super().__init__(engine, principal)
        self.pool_by_account = DataLoader(self._pool_by_account)
        self.vouchers_by_account = DataLoader(self._vouchers_by_account)
        self.voucher_by_id = DataLoader(self._voucher_by_id)
        self.members_by_voucher = DataLoader(self._members_by_voucher)
        self.coupons_by_account = DataLoader(self._coupons_by_account)
        self.coupon_by_id = DataLoader(self._coupon_by_id)
        self.counts_by_account = DataLoader(self._counts_by_account)
        self.payment_methods_by_account = DataLoader(self._payment_methods_by_account)
        self.payment_method_by_id = DataLoader(self._payment_method_by_id)
        self.payments_by_account = DataLoader(self._payments_by_account)
        self.payment_by_id = DataLoader(self._payment_by_id)

    # ------------------------------------------------------------ V1 pools and vouchers

    async def _pool_by_account(self, ids: Sequence[int]) -> list[Decimal | None]:
        """V1: granted - used for accounts that are not members (0 if never granted);
        None for members and where the viewer does not see finances."""
        account = account_ids()
        query = (
            select(
                account.c.id,
                func.coalesce(voucher_pools.c.granted - voucher_pools.c.used, ZERO).label(
                    "remaining"
                ),
            )
            .select_from(
                account.outerjoin(voucher_pools, voucher_pools.c.master_id == account.c.id)
            )
            .where(
                account.c.id.in_(ids),
                ~has_active_master(account.c.id),
                sees_finance(self.principal, account.c.id),
            )
        )
        found = {row.id: row.remaining for row in await self._all(query)}
        return [found.get(i) for i in ids]

    def _of_account(self, ids: Sequence[int]) -> Any:
        """Vouchers of each account: those it created as a master and those naming it."""
        created = select(vouchers, vouchers.c.master_id.label("parent_id")).where(
            vouchers.c.master_id.in_(ids)
        )
        named = (
            select(vouchers, voucher_members.c.member_id.label("parent_id"))
            .join(voucher_members, voucher_members.c.voucher_id == vouchers.c.id)
            .where(voucher_members.c.member_id.in_(ids))
        )
        return created.union(named).subquery()

    async def _vouchers_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        mine = self._of_account(ids)
        query = (
            select(mine)
            .where(sees_finance(self.principal, mine.c.parent_id))
            .order_by(mine.c.parent_id, mine.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.parent_id)

    async def _voucher_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        named = exists().where(
            voucher_members.c.voucher_id == vouchers.c.id,
            sees_finance(self.principal, voucher_members.c.member_id),
        )
        query = select(vouchers).where(
            vouchers.c.id.in_(ids), or_(sees_finance(self.principal, vouchers.c.master_id), named)
        )
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _members_by_voucher(self, ids: Sequence[int]) -> list[list[int]]:
        """Member ids (the Account resolver leaves out those the viewer does not see)."""
        query = (
            select(voucher_members)
            .where(voucher_members.c.voucher_id.in_(ids))
            .order_by(voucher_members.c.voucher_id, voucher_members.c.member_id)
        )
        rows = grouped(ids, await self._all(query), lambda row: row.voucher_id)
        return [[row.member_id for row in group] for group in rows]

    # ------------------------------------------------------------ V3 coupons, F1 counts

    async def _coupons_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(coupons)
            .where(
                coupons.c.account_id.in_(ids), sees_finance(self.principal, coupons.c.account_id)
            )
            .order_by(coupons.c.account_id, coupons.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.account_id)

    async def _coupon_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(coupons).where(
            coupons.c.id.in_(ids), sees_finance(self.principal, coupons.c.account_id)
        )
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _counts_by_account(self, ids: Sequence[int]) -> list[Counts]:
        """F1: coupons and vouchers (created or naming the account) usable now."""
        now = datetime.now(UTC)
        coupon_counts = (
            select(coupons.c.account_id, func.count())
            .where(
                coupons.c.account_id.in_(ids), coupons.c.remaining > 0, coupons.c.valid_until > now
            )
            .group_by(coupons.c.account_id)
        )
        mine = self._of_account(ids)
        voucher_counts = (
            select(mine.c.parent_id, func.count())
            .where(mine.c.remaining > 0, mine.c.valid_from <= now, mine.c.valid_until > now)
            .group_by(mine.c.parent_id)
        )
        async with self.engine.connect() as conn:
            by_coupons: dict[int, int] = dict((await conn.execute(coupon_counts)).tuples().all())
            by_vouchers: dict[int, int] = dict((await conn.execute(voucher_counts)).tuples().all())
        return [Counts(by_coupons.get(i, 0), by_vouchers.get(i, 0)) for i in ids]

    # ------------------------------------------------------------ B5 payment methods

    def _methods(self) -> Any:
        """Payment methods with the responsible account of a managed one."""
        source = payment_methods.alias("source")
        return select(
            payment_methods, source.c.account_id.label("managed_from_account_id")
        ).select_from(
            payment_methods.outerjoin(source, source.c.id == payment_methods.c.managed_from_id)
        )

    async def _payment_methods_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            self._methods()
            .where(
                payment_methods.c.account_id.in_(ids),
                sees_details(self.principal, payment_methods.c.account_id),
            )
            .order_by(payment_methods.c.account_id, payment_methods.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.account_id)

    async def _payment_method_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = self._methods().where(
            payment_methods.c.id.in_(ids),
            sees_details(self.principal, payment_methods.c.account_id),
        )
        return by_key(ids, await self._all(query), lambda row: row.id)

    # ------------------------------------------------------------ F8, B5 payments

    def _sees_both(self, table: Any) -> Any:
        """A payment shows its account and its payer, so it exists only for who sees both
        (after a dissociation the former responsible account no longer sees it)."""
        return sees_name(self.principal, table.c.account_id) & sees_name(
            self.principal, table.c.payer_id
        )

    async def _payments_by_account(self, keys: Sequence[PaymentsKey]) -> list[Page]:
        """Payments made on the account or paid by it (B5), newest first."""

        def query(key: PaymentsKey, parents: list[int]) -> Select[Any]:
            book = payments_of(parents)
            return select(book).where(
                sees_finance(self.principal, book.c.parent_id), self._sees_both(book)
            )

        return await keyset.child_pages(self.engine, keys, query)

    async def _payment_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        payment = payments_by_id(ids)
        query = select(payment).where(
            sees_finance(self.principal, payment.c.account_id)
            | sees_finance(self.principal, payment.c.payer_id),
            self._sees_both(payment),
        )
        return by_key(ids, await self._all(query), lambda row: row.id)
