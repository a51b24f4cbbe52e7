"""Per-request batch loading of the account graph (one SQL query per relation per level).

Every query here carries a visibility predicate from ``visibility.py``: a resolver that
asks for something the principal may not see gets None or [] from the data layer itself.
Loaders are named ``<Thing>By<Key>Loader``, return results in key order, None for missing
keys and [] for empty one-to-many (STYLE.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.accounts.models import accounts, bill_tos, link_events, links, sites
from accountgraph.accounts.visibility import sees_details, sees_finance, sees_link, sees_name
from accountgraph.api.batching import AreaLoaders, by_key, grouped
from accountgraph.domain import Principal

Row = Any


@dataclass(frozen=True, slots=True)
class MembersKey:
    master_id: int
    type: str | None
    status: str
    limit: int
    after: int | None


@dataclass(frozen=True, slots=True)
class MembersPage:
    rows: list[Row]
    total: int


class AccountLoaders(AreaLoaders):
    """The account graph's loaders for one request and one principal."""

    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        super().__init__(engine, principal)
        self.account_by_id = DataLoader(self._accounts_by_id)
        self.members_by_master = DataLoader(self._members_by_master)
        self.link_by_id = DataLoader(self._links_by_id)
        self.link_by_member = DataLoader(self._link_by_member)
        self.invitations_by_account = DataLoader(self._invitations_by_account)
        self.events_by_link = DataLoader(self._events_by_link)
        self.bill_tos_by_account = DataLoader(self._bill_tos_by_account)
        self.bill_to_by_id = DataLoader(self._bill_to_by_id)
        self.sites_by_account = DataLoader(self._sites_by_account)
        self.site_by_id = DataLoader(self._site_by_id)

    # ------------------------------------------------------------ accounts

    def account_columns(self) -> list[Any]:
        """Account columns plus what the principal may see of each row."""
        return [
            *accounts.c,
            sees_details(self.principal, accounts.c.id).label("details"),
            sees_finance(self.principal, accounts.c.id).label("finance"),
            _has_link(links.c.master_id == accounts.c.id).label("is_master"),
            _has_link(links.c.member_id == accounts.c.id).label("is_member"),
        ]

    async def _accounts_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(*self.account_columns()).where(
            accounts.c.id.in_(ids), sees_name(self.principal, accounts.c.id)
        )
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _members_by_master(self, keys: Sequence[MembersKey]) -> list[MembersPage]:
        """One query for every master's page: a window per master, keyset within it."""
        groups: dict[tuple[Any, ...], list[MembersKey]] = defaultdict(list)
        for key in keys:
            groups[(key.type, key.status, key.limit, key.after)].append(key)
        pages: dict[MembersKey, MembersPage] = {}
        for (link_type, status, limit, after), group in groups.items():
            masters = [key.master_id for key in group]
            rows, totals = await self._member_pages(masters, link_type, status, limit, after)
            for key in group:
                pages[key] = MembersPage(
                    rows=rows.get(key.master_id, []), total=totals.get(key.master_id, 0)
                )
        return [pages[key] for key in keys]

    async def _member_pages(
        self,
        masters: list[int],
        link_type: str | None,
        status: str,
        limit: int,
        after: int | None,
    ) -> tuple[dict[int, list[Row]], dict[int, int]]:
        conditions = [
            links.c.master_id.in_(masters),
            links.c.status == status,
            sees_link(self.principal),
            sees_details(self.principal, links.c.master_id),
        ]
        if link_type is not None:
            conditions.append(links.c.type == link_type)
        # One row per (master, member): a member dissociated twice is listed once.
        chosen = (
            select(links.c.master_id, links.c.member_id)
            .where(*conditions)
            .group_by(links.c.master_id, links.c.member_id)
            .subquery()
        )
        counted = select(
            chosen, func.count().over(partition_by=chosen.c.master_id).label("total")
        ).subquery()
        # Window functions run after WHERE: positions count from the cursor, totals do not.
        ordered = (
            select(
                counted,
                func.row_number()
                .over(partition_by=counted.c.master_id, order_by=counted.c.member_id)
                .label("position"),
            )
            .where(counted.c.member_id > after if after is not None else literal(True))
            .subquery()
        )
        query = (
            select(ordered.c.master_id, ordered.c.total, *self.account_columns())
            .join_from(ordered, accounts, accounts.c.id == ordered.c.member_id)
            .where(ordered.c.position <= limit + 1)
            .order_by(ordered.c.master_id, ordered.c.member_id)
        )
        by_master: dict[int, list[Row]] = defaultdict(list)
        totals: dict[int, int] = {}
        for row in await self._all(query):
            by_master[row.master_id].append(row)
            totals[row.master_id] = row.total
        missing = [master for master in masters if master not in totals]
        if missing:  # masters whose page is empty still have a total (past the last cursor)
            count = (
                select(chosen.c.master_id, func.count())
                .where(chosen.c.master_id.in_(missing))
                .group_by(chosen.c.master_id)
            )
            totals.update({row[0]: row[1] for row in await self._all(count)})
        return by_master, totals

    # ------------------------------------------------------------ links

    async def _links_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(links).where(links.c.id.in_(ids), sees_link(self.principal))
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _link_by_member(self, member_ids: Sequence[int]) -> list[Row | None]:
        """A member's current link: its ACTIVE one (H1: at most one), else the latest that
        was not DECLINED (API.md ``link``). An invitation sent before the account joined a
        master stays open and is newer, but is not its link to its master."""
        query = (
            select(links)
            .distinct(links.c.member_id)
            .where(
                links.c.member_id.in_(member_ids),
                links.c.status != "DECLINED",
                sees_link(self.principal),
                sees_details(self.principal, links.c.member_id),
            )
            .order_by(links.c.member_id, (links.c.status == "ACTIVE").desc(), links.c.id.desc())
        )
        return by_key(member_ids, await self._all(query), lambda row: row.member_id)

    async def _invitations_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        """Open invitations an account received or (as a master) sent."""
        wanted = set(ids)
        query = (
            select(links)
            .where(
                links.c.status == "INVITED",
                sees_link(self.principal),
                or_(links.c.member_id.in_(ids), links.c.master_id.in_(ids)),
            )
            .order_by(links.c.id)
        )
        by_owner: dict[int, list[Row]] = defaultdict(list)
        for row in await self._all(query):
            for owner in (row.member_id, row.master_id):
                if owner in wanted:
                    by_owner[owner].append(row)
        return [by_owner.get(account_id, []) for account_id in ids]

    async def _events_by_link(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(link_events)
            .join(links, links.c.id == link_events.c.link_id)
            .where(link_events.c.link_id.in_(ids), sees_link(self.principal))
            .order_by(link_events.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.link_id)

    # ------------------------------------------------------------ bill-tos and sites

    async def _bill_tos_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(bill_tos, _read_only())
            .where(
                bill_tos.c.account_id.in_(ids), sees_details(self.principal, bill_tos.c.account_id)
            )
            .order_by(bill_tos.c.account_id, bill_tos.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.account_id)

    async def _bill_to_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(bill_tos, _read_only()).where(
            bill_tos.c.id.in_(ids), sees_details(self.principal, bill_tos.c.account_id)
        )
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _sites_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(sites)
            .where(sites.c.account_id.in_(ids), sees_details(self.principal, sites.c.account_id))
            .order_by(sites.c.account_id, sites.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.account_id)

    async def _site_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(sites).where(
            sites.c.id.in_(ids), sees_details(self.principal, sites.c.account_id)
        )
        return by_key(ids, await self._all(query), lambda row: row.id)


def _has_link(condition: Any) -> Any:
    """H1 roles: an ACTIVE link as master or as member. No LIMIT inside: EXISTS stops at
    the first row anyway, and a LIMIT made the planner scan links once per account."""
    return select(links.c.id).where(condition, links.c.status == "ACTIVE").exists()


def _read_only() -> Any:
    """I3: a member's primary bill-to mirrors its master's while its ACTIVE link says so."""
    return (
        bill_tos.c.is_primary
        & select(links.c.id)
        .where(
            links.c.member_id == bill_tos.c.account_id,
            links.c.status == "ACTIVE",
            links.c.references_master_invoice_info,
        )
        .exists()
    ).label("read_only")
