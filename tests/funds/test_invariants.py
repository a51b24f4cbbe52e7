"""F9 (with F2-F8, U2, U3 along the way): random sequences of money operations on one
enterprise keep the ledger sound after every single step.

Hypothesis draws a list of operations over a master, three members (two TRUSTEESHIP, one
of which granted only VIEW_FINANCE so transfers to it are refused, and one FINANCIAL) and
a standalone account: payments, allocations and reclamations by CASH and CREDIT, credit
lines and limits, charges (some dated before the association), withdrawals, balance
adjustments and stored value cards (W1: paying charges before any cash), many of them
chosen to sit exactly on a rule's limit or one cent past it.
Each runs either through the GraphQL API or, faster, straight through the service in one
transaction (what ``perform`` does). A reference model (``Model``: DOMAIN.md's rules over
plain Decimals) says whether each must succeed or which code must refuse it, and what
every balance must then be. After each step the test checks the ledger itself (``verify``:
balances equal their postings, every entry balances per bucket, all postings sum to 0),
the model's balances and allocation totals, F2 as the API reports it, the row rules (no
bucket negative, transferred cash within cash, reclaimed within allocated), and that
transferred cash only ever fell by a charge or a reclamation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from arq.connections import ArqRedis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accountgraph.accounts.models import links
from accountgraph.api import ids
from accountgraph.api.auth import Principal, PrincipalKind
from accountgraph.api.errors import DomainError
from accountgraph.billing import stored_value
from accountgraph.funds import charges as charging
from accountgraph.funds import payments as paying
from accountgraph.funds import transfers as transferring
from accountgraph.funds.models import (
    BUCKETS,
    allocations,
    balances,
    charges,
    journal_entries,
    payments,
    transfers,
)
from accountgraph.funds.public import BalanceBucket, DisbursementMethod
from accountgraph.funds.verify import verify
from accountgraph.models import metadata
from tests.helpers import OPERATOR_TOKEN, Api

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
TRANSFER_PERMISSIONS = frozenset({"SYNC_CREDIT_CONTROL", "VIEW_FINANCE"})
ADJUSTABLE = ("BANKERS_ACCEPTANCE_BILL", "CREDIT_REFUND", "UNSETTLED_AMOUNT", "NEGATIVE_BILL")
OPERATOR = None  # an actor of None is a platform operator


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


# ---------------------------------------------------------------- the reference model


@dataclass
class Link:
    master: int
    type: str
    permissions: frozenset[str]
    activated_at: datetime


@dataclass
class Model:
    """DOMAIN.md F2-F8, U2, U3 over plain Decimals: what each operation must do, or the
    code that must refuse it (checks in the order the rules list them). Shared with
    test_concurrency.py, which replays the recorded operations through it."""

    balances: dict[int, dict[str, Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(BUCKETS, ZERO))
    )
    links: dict[int, Link] = field(default_factory=dict)  # member -> its ACTIVE link
    former: set[int] = field(default_factory=set)  # members dissociated and not back (U5)
    allocations: dict[tuple[int, int, str], list[Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: [ZERO, ZERO])
    )
    transfers: int = 0
    charges: int = 0
    payments: int = 0
    # W1: Σ remaining of each account's stored value cards (issued without expiry here)
    stored_value: dict[int, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    # V3: Σ remaining of each account's coupons (issued far from expiry here)
    coupons: dict[int, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    # V1: each master's voucher pool left, and the vouchers in the order a charge uses
    # them (one validity window for all here, so by id): [remaining, the members named]
    pools: dict[int, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    vouchers: list[list[Any]] = field(default_factory=list)

    # F2, U3
    def trusteeship(self, account: int) -> Link | None:
        link = self.links.get(account)
        return link if link is not None and link.type == "TRUSTEESHIP" else None

    def frozen_cash(self, account: int) -> Decimal:
        b = self.balances[account]
        return b["CASH"] - b["TRANSFERRED_CASH"] if self.trusteeship(account) else ZERO

    def available_quota(self, account: int) -> Decimal:
        return quota_of(self.balances[account], self.frozen_cash(account))

    # P2-P4 as the money operations use them
    def sees(self, actor: int | None, account: int) -> bool:
        if actor is None or actor == account:
            return True
        link = self.links.get(account)
        return link is not None and link.master == actor

    def pair(self, actor: int | None, master: int, member: int) -> str | None:
        """F3: the master's own users or an operator; an ACTIVE link with both grants."""
        if actor is not None and actor != master:
            return "PERMISSION_NOT_GRANTED" if self.sees(actor, master) else "NOT_FOUND"
        link = self.links.get(member)
        if link is None or link.master != master:  # an operator sees an ended link (U5)
            return "LINK_NOT_ACTIVE" if actor is None and member in self.former else "NOT_FOUND"
        if not link.permissions >= TRANSFER_PERMISSIONS:
            return "PERMISSION_NOT_GRANTED"
        return None

    def enterprise_available_credit(self, master: int) -> Decimal:
        """F6; credit a master was itself given as a member (kept after a dissociation,
        U5) is consumption-only (F3), so it is not the enterprise's to pass on."""
        m = self.balances[master]
        return m["CREDIT_LIMIT"] - m["TRANSFERRED_CREDIT"] - m["OUTSTANDING_FEES"]

    # F3, F4, F5
    def allocate(
        self, actor: int | None, master: int, member: int, method: str, amount: Decimal
    ) -> str | None:
        refused = self.pair(actor, master, member)
        if refused:
            return refused
        m, b = self.balances[master], self.balances[member]
        if method == "CASH":
            if amount > m["CASH"] - m["TRANSFERRED_CASH"]:  # allocated cash is never passed on
                return "INSUFFICIENT_FUNDS"
            m["CASH"] -= amount
            b["CASH"] += amount
            b["TRANSFERRED_CASH"] += amount
        else:
            if amount > self.enterprise_available_credit(master):
                return "CREDIT_EXCEEDS_AVAILABLE"
            m["CREDIT_LIMIT"] -= amount
            b["CREDIT_LIMIT"] += amount
            b["TRANSFERRED_CREDIT"] += amount
        self.allocations[(master, member, method)][0] += amount
        self.transfers += 1
        return None

    def net_allocated(self, master: int, member: int, method: str) -> Decimal:
        allocated, reclaimed = self.allocations.get((master, member, method), (ZERO, ZERO))
        return allocated - reclaimed

    def unspent(self, member: int, method: str) -> Decimal:
        b = self.balances[member]
        if method == "CASH":
            return b["TRANSFERRED_CASH"]
        return min(max(ZERO, b["CREDIT_LIMIT"] - b["OUTSTANDING_FEES"]), b["TRANSFERRED_CREDIT"])

    def reclaim(
        self, actor: int | None, master: int, member: int, method: str, amount: Decimal
    ) -> str | None:
        refused = self.pair(actor, master, member)
        if refused:
            return refused
        if amount > self.net_allocated(master, member, method):
            return "EXCEEDS_NET_ALLOCATED"
        if amount > self.unspent(member, method):
            return "EXCEEDS_UNSPENT"
        m, b = self.balances[master], self.balances[member]
        if method == "CASH":
            b["CASH"] -= amount
            b["TRANSFERRED_CASH"] -= amount
            m["CASH"] += amount
        else:
            b["CREDIT_LIMIT"] -= amount
            b["TRANSFERRED_CREDIT"] -= amount
            m["CREDIT_LIMIT"] += amount
        self.allocations[(master, member, method)][1] += amount
        self.transfers += 1
        return None

    # F6
    def set_credit_line(self, account: int, line: Decimal) -> str | None:
        if account in self.links:
            return "INVALID_INPUT"
        b = self.balances[account]
        delta = line - b["CREDIT_LINE"]
        if b["CREDIT_LIMIT"] - b["TRANSFERRED_CREDIT"] + delta < 0:
            return "CREDIT_EXCEEDS_AVAILABLE"
        b["CREDIT_LINE"] += delta
        b["CREDIT_LIMIT"] += delta
        return None

    def set_credit_limit(
        self, actor: int | None, master: int, member: int, limit: Decimal
    ) -> str | None:
        refused = self.pair(actor, master, member)
        if refused:
            return refused
        delta = limit - self.balances[member]["CREDIT_LIMIT"]
        if delta > 0 and delta > self.enterprise_available_credit(master):
            return "CREDIT_EXCEEDS_AVAILABLE"
        if delta < 0 and -delta > self.balances[member]["TRANSFERRED_CREDIT"]:
            return "EXCEEDS_NET_ALLOCATED"  # a line of its own it brought (after U5) stays
        if delta < 0 and self.available_quota(member) + delta <= 0:
            return "QUOTA_WOULD_BE_NON_POSITIVE"
        self.balances[master]["CREDIT_LIMIT"] -= delta
        self.balances[member]["CREDIT_LIMIT"] += delta
        self.balances[member]["TRANSFERRED_CREDIT"] += delta
        return None

    # F7, U2, U3, U4
    def charge(self, account: int, amount: Decimal, occurred_at: datetime) -> Decimal:
        """Never refused; returns the part the master settled."""
        b = self.balances[account]
        link = self.trusteeship(account)
        master_pays = link is not None and occurred_at >= link.activated_at
        rest = amount
        if not master_pays:  # V2 first; a member's own coupons only before association (U2)
            rest -= self._use(self.coupons, account, rest)
        rest -= self._use_vouchers(account, rest)  # V2: the vouchers naming the account
        rest -= self._use(self.stored_value, account, rest)  # W1: before any cash
        from_transferred = min(rest, b["TRANSFERRED_CASH"])
        b["CASH"] -= from_transferred
        b["TRANSFERRED_CASH"] -= from_transferred
        rest -= from_transferred
        self.charges += 1
        if master_pays:
            assert link is not None
            settled = rest
            rest -= self._use(self.coupons, link.master, rest)  # V2
            rest -= self._use(self.stored_value, link.master, rest)  # W1
            m = self.balances[link.master]
            from_master_cash = min(rest, m["CASH"])
            m["CASH"] -= from_master_cash
            m["OUTSTANDING_FEES"] += rest - from_master_cash
            return settled
        own = min(rest, b["CASH"])  # U2: a bill from before the association
        b["CASH"] -= own
        b["OUTSTANDING_FEES"] += rest - own
        return ZERO

    def _use_vouchers(self, account: int, amount: Decimal) -> Decimal:
        taken = ZERO
        for voucher in self.vouchers:
            if account in voucher[1]:
                part = min(amount - taken, voucher[0])
                voucher[0] -= part
                taken += part
        return taken

    # V1
    def create_voucher(
        self, actor: int | None, master: int, amount: Decimal, members: list[int]
    ) -> str | None:
        if actor is not None and actor != master:
            return "PERMISSION_NOT_GRANTED" if self.sees(actor, master) else "NOT_FOUND"
        for member in members:
            link = self.links.get(member)
            if link is None or link.master != master:
                return "NOT_FOUND"
        if amount > self.pools[master]:
            return "INSUFFICIENT_FUNDS"
        self.pools[master] -= amount
        self.vouchers.append([amount, frozenset(members)])
        return None

    @staticmethod
    def _use(instruments: dict[int, Decimal], account: int, amount: Decimal) -> Decimal:
        taken = min(amount, instruments[account])
        instruments[account] -= taken
        return taken

    # F8
    def payment(self, account: int, amount: Decimal) -> None:
        b = self.balances[account]
        settles = min(amount, b["OUTSTANDING_FEES"])
        b["OUTSTANDING_FEES"] -= settles
        b["CASH"] += amount - settles
        self.payments += 1

    def withdraw(self, actor: int | None, account: int, amount: Decimal) -> str | None:
        if actor != account:
            return "PERMISSION_NOT_GRANTED" if self.sees(actor, account) else "NOT_FOUND"
        b = self.balances[account]
        if amount > b["CASH"] - b["TRANSFERRED_CASH"]:
            return "INSUFFICIENT_FUNDS"
        b["CASH"] -= amount
        return None

    # W1, U4
    def issue_card(self, account: int, amount: Decimal) -> str | None:
        if self.trusteeship(account) is not None:
            return "NOT_ALLOWED_WHILE_ASSOCIATED"
        self.stored_value[account] += amount
        return None

    # V3, U4
    def issue_coupon(self, account: int, amount: Decimal) -> str | None:
        if self.trusteeship(account) is not None:
            return "NOT_ALLOWED_WHILE_ASSOCIATED"
        self.coupons[account] += amount
        return None

    # U5: the link ends; what was transferred stays with the member (consumption only)
    def dissociate(self, member: int) -> str | None:
        if member not in self.links:
            return "LINK_NOT_ACTIVE"
        del self.links[member]
        self.former.add(member)
        return None

    # U1: a member that owes cannot accept a trusteeship invitation
    def may_accept(self, member: int, type: str) -> str | None:
        owes = self.balances[member]["OUTSTANDING_FEES"] > 0
        return "OUTSTANDING_FEES" if type == "TRUSTEESHIP" and owes else None

    # F1
    def adjust(self, account: int, bucket: str, amount: Decimal) -> str | None:
        b = self.balances[account]
        if b[bucket] + amount < 0:
            return "INSUFFICIENT_FUNDS"
        b[bucket] += amount
        return None


def quota_of(values: dict[str, Decimal], frozen_cash: Decimal) -> Decimal:
    """F2, written out again here (not the app's function)."""
    return (
        values["CASH"]
        - frozen_cash
        + values["BANKERS_ACCEPTANCE_BILL"]
        + values["CREDIT_LIMIT"]
        + values["CREDIT_REFUND"]
        - values["UNSETTLED_AMOUNT"]
        - (values["OUTSTANDING_FEES"] - values["NEGATIVE_BILL"])
    )


# ---------------------------------------------------------------- the database side


async def reset(engine: AsyncEngine, redis: ArqRedis) -> None:
    """What the ``clean`` fixture does, for every Hypothesis example."""
    tables = ", ".join(t.name for t in metadata.sorted_tables if t.name != "platform_settings")
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await conn.execute(text("UPDATE platform_settings SET billing_hierarchy_enabled = true"))
    await redis.flushdb()


@dataclass(frozen=True)
class Snapshot:
    balances: dict[int, dict[str, Decimal]]
    allocations: dict[tuple[int, int, str], tuple[Decimal, Decimal]]
    counts: dict[str, int]
    stored_value: dict[int, Decimal] = field(default_factory=dict)  # W1, per account


async def snapshot(conn: AsyncConnection) -> Snapshot:
    rows = (await conn.execute(select(balances))).all()
    held = {row.account_id: {b: getattr(row, c) for b, c in BUCKETS.items()} for row in rows}
    totals = {
        (row.master_id, row.member_id, row.method): (row.allocated, row.reclaimed)
        for row in (await conn.execute(select(allocations))).all()
    }
    counts = {}
    for table in (transfers, charges, payments, journal_entries):
        counts[table.name] = (
            await conn.execute(select(func.count()).select_from(table))
        ).scalar_one()
    cards = await conn.execute(
        text("SELECT account_id, sum(remaining) FROM stored_value_cards GROUP BY account_id")
    )
    return Snapshot(held, totals, counts, {row[0]: row[1] for row in cards.all()})


def held(snap: Snapshot, account: int) -> dict[str, Decimal]:
    return snap.balances.get(account, dict.fromkeys(BUCKETS, ZERO))


async def assert_ledger_rules(conn: AsyncConnection) -> None:
    """F9 and the row rules, whatever produced the ledger."""
    assert await verify(conn) == []
    total = (await conn.execute(text("SELECT coalesce(sum(amount), 0) FROM postings"))).scalar_one()
    assert total == 0
    unbalanced = (
        await conn.execute(
            text(
                "SELECT entry_id, bucket FROM postings GROUP BY entry_id, bucket "
                "HAVING sum(amount) <> 0"
            )
        )
    ).all()
    assert unbalanced == []
    for row in (await conn.execute(select(balances))).all():
        values = {b: getattr(row, c) for b, c in BUCKETS.items()}
        assert all(v >= 0 for v in values.values()), (row.account_id, values)
        assert values["TRANSFERRED_CASH"] <= values["CASH"], (row.account_id, values)
    for row in (await conn.execute(select(allocations))).all():
        assert ZERO <= row.reclaimed <= row.allocated, row


def assert_matches_model(
    snap: Snapshot, model: Model, accounts: Iterable[int], *, alone: bool = True
) -> None:
    """``alone``: the model's world is all the database holds (the counts of records are
    compared too); otherwise only the world's own accounts and allocations are."""
    accounts = list(accounts)
    for account in accounts:
        assert held(snap, account) == dict(model.balances[account]), account
    expected = {key: (a, r) for key, (a, r) in model.allocations.items() if a or r}
    own = {key: totals for key, totals in snap.allocations.items() if key[0] in accounts}
    assert (snap.allocations if alone else own) == expected
    if alone:
        assert snap.counts["transfers"] == model.transfers
        assert snap.counts["charges"] == model.charges
        assert snap.counts["payments"] == model.payments
    for account in accounts:  # W1
        assert snap.stored_value.get(account, ZERO) == model.stored_value[account], account


# ---------------------------------------------------------------- the enterprise


NAMES = ("M", "T1", "T2", "F", "S")
MEMBERS = ("T1", "T2", "F")


@dataclass
class World:
    api: Api
    ids: dict[str, int]
    gids: dict[str, str]
    tokens: dict[str, str]
    principals: dict[str, Principal]
    model: Model

    @property
    def master(self) -> int:
        return self.ids["M"]


OPERATOR_PRINCIPAL = Principal(PrincipalKind.OPERATOR, None, "operator:invariants")


async def build_world(
    api: Api,
    redis: ArqRedis,
    opening: dict[str, Decimal],
    *,
    prefix: str = "Inv",
    empty_first: bool = True,
) -> World:
    """M; T1 (TRUSTEESHIP, all grants), T2 (TRUSTEESHIP, VIEW_FINANCE only), F
    (FINANCIAL, all grants), S (standalone). ``opening`` is cash paid to members before
    they join (U3: a trusteeship member's is then frozen). Accounts are named
    ``<prefix>-<name>``; ``empty_first=False`` builds beside what the database holds."""
    if empty_first:
        await reset(api.engine, redis)
    gids = {name: await api.account(f"{prefix}-{name}") for name in NAMES}
    account_ids = {name: ids.decode_as(gid, "Account") or 0 for name, gid in gids.items()}
    model = Model()
    for name, cash in opening.items():
        if cash > 0:
            await api.ok("recordPayment", PAYMENT, {"accountId": gids[name], "amount": money(cash)})
            model.payment(account_ids[name], cash)
    await api.link(gids["M"], gids["T1"], "TRUSTEESHIP")
    await api.link(gids["M"], gids["T2"], "TRUSTEESHIP", ["VIEW_FINANCE"])
    await api.link(gids["M"], gids["F"], "FINANCIAL")
    async with api.engine.connect() as conn:
        active = select(links).where(
            links.c.status == "ACTIVE", links.c.master_id == account_ids["M"]
        )
        for row in (await conn.execute(active)).all():
            model.links[row.member_id] = Link(
                row.master_id, row.type, frozenset(row.permissions), row.activated_at
            )
    tokens = {name: await api.token(gids[name]) for name in NAMES}
    principals = {
        name: Principal(
            PrincipalKind.ACCOUNT_USER, account_ids[name], f"{account_ids[name]}:invariants"
        )
        for name in NAMES
    }
    return World(api, account_ids, gids, tokens, principals, model)


# ---------------------------------------------------------------- operations

PAYMENT = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) {
  userErrors { code } } }"""
ALLOCATE = """mutation($input: TransferFundsInput!) { allocateFunds(input: $input) {
  transfer { id } userErrors { code } } }"""
RECLAIM = """mutation($input: TransferFundsInput!) { reclaimFunds(input: $input) {
  transfer { id } userErrors { code } } }"""
CREDIT_LINE = """mutation($input: SetCreditLineInput!) { setCreditLine(input: $input) {
  userErrors { code } } }"""
CREDIT_LIMIT = """mutation($input: SetCreditLimitInput!) { setCreditLimit(input: $input) {
  userErrors { code } } }"""
CHARGE = """mutation($input: RecordChargeInput!) { recordCharge(input: $input) {
  charge { id paidByMaster } userErrors { code } } }"""
WITHDRAW = """mutation($input: WithdrawCashInput!) { withdrawCash(input: $input) {
  userErrors { code } } }"""
ADJUST = """mutation($input: AdjustBalanceInput!) { adjustBalance(input: $input) {
  userErrors { code } } }"""
CARD = """mutation($input: IssueStoredValueCardInput!) { issueStoredValueCard(input: $input) {
  userErrors { code } } }"""
COUPON = """mutation($input: IssueCouponInput!) { issueCoupon(input: $input) {
  userErrors { code } } }"""
COUPONS_VALID_UNTIL = (datetime.now(UTC) + timedelta(days=365)).isoformat()
FINANCE_FIELDS = "cashBalance frozenCash transferredCash availableQuota"


# An amount is drawn as cents, or as a limit the model knows at the time the step runs:
# exactly all of it ("all") or one cent more ("over").
Amount = int | str
amounts: st.SearchStrategy[Amount] = st.one_of(
    st.integers(1, 30_000), st.sampled_from(["all", "over"])
)
actors = st.sampled_from(["master", "master", "master", "master", "operator", "member"])
TRANSFER_TARGETS = ("T1", "T1", "F", "F", "T2", "S")  # mostly members that granted both


@dataclass(frozen=True)
class Op:
    kind: str
    account: str
    amount: Amount = 0
    method: str = "CASH"
    actor: str = "master"
    bucket: str = ""
    sign: int = 1
    before_association: bool = False
    via_api: bool = False
    pick: int | None = None  # reclaim: the pick-th (member, method) with net allocated > 0


def op(
    kind: str, accounts: Iterable[str], **extra: st.SearchStrategy[Any]
) -> st.SearchStrategy[Op]:
    return st.builds(
        Op,
        kind=st.just(kind),
        account=st.sampled_from(list(accounts)),
        via_api=st.integers(0, 3).map(lambda n: n == 0),
        **extra,
    )


methods = st.sampled_from(["CASH", "CREDIT"])
reclaimed: st.SearchStrategy[Amount] = st.one_of(  # mostly what was allocated and is unspent
    st.integers(1, 5_000), st.sampled_from(["all", "all", "over"])
)
OPERATIONS = st.one_of(
    op("pay", NAMES, amount=amounts),
    op("allocate", TRANSFER_TARGETS, amount=amounts, method=methods, actor=actors),
    op("allocate", TRANSFER_TARGETS, amount=amounts, method=methods, actor=actors),
    op("reclaim", TRANSFER_TARGETS, amount=reclaimed, method=methods, actor=actors),
    # the master on members that granted both: the paths that move money
    op("allocate", ("T1", "F"), amount=st.integers(1, 20_000), method=methods),
    op("reclaim", ("T1", "F"), amount=reclaimed, method=methods, pick=st.integers(0, 3)),
    op("reclaim", ("T1", "F"), amount=reclaimed, method=methods, pick=st.integers(0, 3)),
    op(
        "credit_line",
        ("M", "M", "S", "T1"),
        amount=st.one_of(st.integers(0, 80_000), st.sampled_from(["all", "over"])),
    ),
    op(
        "credit_limit",
        MEMBERS,
        amount=st.one_of(st.integers(0, 40_000), st.sampled_from(["all", "over", "edge", "edge"])),
        actor=st.sampled_from(["master", "master", "operator", "member"]),
    ),
    op("charge", NAMES, amount=amounts, before_association=st.booleans()),
    op("card", NAMES, amount=amounts),  # W1: refused on a trusteeship member (U4)
    op(
        "withdraw",
        NAMES,
        amount=amounts,
        actor=st.sampled_from(["own", "own", "own", "master", "operator"]),
    ),
    op(
        "adjust",
        NAMES,
        amount=amounts,
        bucket=st.sampled_from(ADJUSTABLE),
        sign=st.sampled_from([1, -1]),
    ),
)


@dataclass(frozen=True)
class Step:
    """An operation made concrete against the model's state when it runs."""

    op: Op
    account: int
    amount: Decimal
    actor: int | None
    occurred_at: datetime | None = None


def resolve(world: World, op: Op) -> Step:
    model, master = world.model, world.master
    if op.pick is not None:  # take back from a member that has something to take back
        held_back = sorted(
            (member, method)
            for (_, member, method), (given, taken) in model.allocations.items()
            if given > taken
        )
        if held_back:
            member, method = held_back[op.pick % len(held_back)]
            name = next(n for n, i in world.ids.items() if i == member)
            op = replace(op, account=name, method=method)
    account = world.ids[op.account]
    actor = {"master": master, "operator": OPERATOR, "member": account, "own": account}.get(
        op.actor, master
    )
    b = model.balances[account]
    # The value that is exactly on the rule's limit ("all"); "over" is one cent past it.
    past = CENT
    if op.kind == "allocate":
        m = model.balances[master]
        limit = (
            m["CASH"] - m["TRANSFERRED_CASH"]
            if op.method == "CASH"
            else model.enterprise_available_credit(master)
        )
    elif op.kind == "reclaim":
        limit = min(
            model.net_allocated(master, account, op.method), model.unspent(account, op.method)
        )
    elif op.kind == "credit_line":  # the lowest line the members' limits leave room for
        limit = b["CREDIT_LINE"] - b["CREDIT_LIMIT"] + b["TRANSFERRED_CREDIT"]
        past = -CENT
    elif op.kind == "credit_limit":  # all the enterprise's available credit
        limit = b["CREDIT_LIMIT"] + model.enterprise_available_credit(master)
        if op.amount == "edge":  # the member's available quota left at exactly 0
            limit = b["CREDIT_LIMIT"] - model.available_quota(account)
    elif op.kind == "withdraw":
        limit = b["CASH"] - b["TRANSFERRED_CASH"]
    elif op.kind == "adjust":
        limit = b[op.bucket] if op.sign < 0 else Decimal(100)
    elif op.kind == "charge":  # all the account's cash
        limit = b["CASH"]
    else:  # pay: exactly the outstanding fees
        limit = b["OUTSTANDING_FEES"]
    if isinstance(op.amount, int):
        value = Decimal(op.amount) * CENT
    else:
        value = limit + past if op.amount == "over" else limit
    if op.kind in ("credit_line", "credit_limit"):
        value = max(ZERO, value)
    elif value <= 0:
        value = CENT
    if op.kind == "adjust":
        value *= op.sign
    occurred_at = None
    if op.kind == "charge" and op.before_association:
        link = model.links.get(account)
        occurred_at = (link.activated_at if link else datetime.now(UTC)) - timedelta(hours=1)
    return Step(op, account, value.quantize(CENT), actor, occurred_at)


def expect(model: Model, master: int, step: Step) -> str | None:
    """Apply the step to the model: the error code it must be refused with, or None."""
    op, account, amount, actor = step.op, step.account, step.amount, step.actor
    if op.kind == "pay":
        model.payment(account, amount)
        return None
    if op.kind == "allocate":
        return model.allocate(actor, master, account, op.method, amount)
    if op.kind == "reclaim":
        return model.reclaim(actor, master, account, op.method, amount)
    if op.kind == "credit_line":
        return model.set_credit_line(account, amount)
    if op.kind == "credit_limit":
        return model.set_credit_limit(actor, master, account, amount)
    if op.kind == "charge":
        model.charge(account, amount, step.occurred_at or datetime.now(UTC))
        return None
    if op.kind == "card":
        return model.issue_card(account, amount)
    if op.kind == "coupon":
        return model.issue_coupon(account, amount)
    if op.kind == "withdraw":
        return model.withdraw(actor, account, amount)
    assert op.kind == "adjust"
    return model.adjust(account, op.bucket, amount)


async def run_direct(world: World, step: Step) -> str | None:
    """The service in one transaction, as ``perform`` runs it; a DomainError rolls back."""
    op, account, amount, master = step.op, step.account, step.amount, world.master
    principal = (
        OPERATOR_PRINCIPAL
        if step.actor is None
        else next(p for p in world.principals.values() if p.account_id == step.actor)
    )
    calls: dict[str, Callable[[AsyncConnection], Awaitable[Any]]] = {
        "pay": lambda c: paying.record_payment(
            c, OPERATOR_PRINCIPAL, account_id=account, amount=amount
        ),
        "allocate": lambda c: transferring.allocate(
            c,
            principal,
            master_id=master,
            member_id=account,
            amount=amount,
            method=DisbursementMethod(op.method),
            idempotency_key=None,
        ),
        "reclaim": lambda c: transferring.reclaim(
            c,
            principal,
            master_id=master,
            member_id=account,
            amount=amount,
            method=DisbursementMethod(op.method),
            idempotency_key=None,
        ),
        "credit_line": lambda c: transferring.set_credit_line(
            c, OPERATOR_PRINCIPAL, master_id=account, amount=amount
        ),
        "credit_limit": lambda c: transferring.set_credit_limit(
            c, principal, master_id=master, member_id=account, limit=amount
        ),
        "charge": lambda c: charging.record_charge(
            c,
            OPERATOR_PRINCIPAL,
            account_id=account,
            amount=amount,
            description="usage",
            site_id=None,
            occurred_at=step.occurred_at,
        ),
        "withdraw": lambda c: paying.withdraw_cash(c, principal, account_id=account, amount=amount),
        "card": lambda c: stored_value.issue_stored_value_card(
            c, OPERATOR_PRINCIPAL, account_id=account, amount=amount, valid_until=None
        ),
        "adjust": lambda c: paying.adjust_balance(
            c,
            OPERATOR_PRINCIPAL,
            account_id=account,
            bucket=BalanceBucket(op.bucket),
            amount=amount,
            reason="back office",
        ),
    }
    try:
        async with world.api.engine.begin() as conn:
            await calls[op.kind](conn)
    except DomainError as error:
        return error.code.value
    return None


Request = tuple[str, str, dict[str, Any], str]  # mutation, document, input, token


def request_of(world: World, step: Step) -> Request:
    """The GraphQL request that performs ``step``, with the actor's token."""
    op, amount = step.op, money(step.amount)
    gid = world.gids[op.account]
    token = next((world.tokens[n] for n in NAMES if world.ids[n] == step.actor), OPERATOR_TOKEN)
    if op.kind in {"pay", "credit_line", "charge", "adjust", "card", "coupon"}:  # P4: operators
        token = OPERATOR_TOKEN
    requests: dict[str, tuple[str, str, dict[str, Any]]] = {
        "pay": ("recordPayment", PAYMENT, {"accountId": gid, "amount": amount}),
        "allocate": (
            "allocateFunds",
            ALLOCATE,
            {"masterId": world.gids["M"], "memberId": gid, "amount": amount, "method": op.method},
        ),
        "reclaim": (
            "reclaimFunds",
            RECLAIM,
            {"masterId": world.gids["M"], "memberId": gid, "amount": amount, "method": op.method},
        ),
        "credit_line": ("setCreditLine", CREDIT_LINE, {"masterId": gid, "amount": amount}),
        "credit_limit": (
            "setCreditLimit",
            CREDIT_LIMIT,
            {"masterId": world.gids["M"], "memberId": gid, "limit": amount},
        ),
        "charge": (
            "recordCharge",
            CHARGE,
            {
                "accountId": gid,
                "amount": amount,
                "description": "usage",
                "occurredAt": step.occurred_at.isoformat() if step.occurred_at else None,
            },
        ),
        "withdraw": ("withdrawCash", WITHDRAW, {"accountId": gid, "amount": amount}),
        "card": ("issueStoredValueCard", CARD, {"accountId": gid, "amount": amount}),
        "coupon": (
            "issueCoupon",
            COUPON,
            {"accountId": gid, "amount": amount, "validUntil": COUPONS_VALID_UNTIL},
        ),
        "adjust": (
            "adjustBalance",
            ADJUST,
            {"accountId": gid, "bucket": op.bucket, "amount": amount, "reason": "back office"},
        ),
    }
    name, query, input = requests[op.kind]
    return name, query, input, token


async def run_api(world: World, step: Step) -> str | None:
    name, query, input, token = request_of(world, step)
    payload = await world.api.mutate(name, query, input, token=token)
    codes = [error["code"] for error in payload["userErrors"]]
    assert len(codes) <= 1, codes
    return codes[0] if codes else None


async def assert_quota_as_the_api_reports(world: World, snap: Snapshot) -> None:
    """F2 recomputed from the balance rows against every account's finance in the API."""
    query = (
        "query { "
        + " ".join(
            f'{name}: account(id: "{gid}") {{ finance {{ {FINANCE_FIELDS} }} }}'
            for name, gid in world.gids.items()
        )
        + " }"
    )
    data = await world.api.gql(query)
    for name, account in world.ids.items():
        values = held(snap, account)
        frozen = (
            values["CASH"] - values["TRANSFERRED_CASH"]
            if world.model.trusteeship(account)
            else ZERO
        )
        finance = data[name]["finance"]
        if account not in snap.balances:  # never had money: no finance row yet
            assert finance is None or Decimal(finance["availableQuota"]) == 0
            continue
        assert Decimal(finance["frozenCash"]) == frozen, name
        assert Decimal(finance["availableQuota"]) == quota_of(values, frozen), name
        assert Decimal(finance["cashBalance"]) == values["CASH"], name


def assert_transferred_cash_moves(
    world: World, step: Step, refused: str | None, before: Snapshot, after: Snapshot
) -> None:
    """F3, F8: transferred cash falls only by a charge on the account or a reclamation of
    cash from it; a withdrawal never takes it."""
    for account in world.ids.values():
        was, now = held(before, account), held(after, account)
        if now["TRANSFERRED_CASH"] < was["TRANSFERRED_CASH"]:
            assert refused is None and step.account == account, step
            assert step.op.kind == "charge" or (
                step.op.kind == "reclaim" and step.op.method == "CASH"
            ), step
        if step.op.kind == "withdraw" and account == step.account:
            assert now["TRANSFERRED_CASH"] == was["TRANSFERRED_CASH"]
            assert was["CASH"] - now["CASH"] <= was["CASH"] - was["TRANSFERRED_CASH"]


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    operations=st.lists(OPERATIONS, min_size=10, max_size=50),
    opening=st.fixed_dictionaries(
        {
            "M": st.integers(0, 200_000).map(lambda c: Decimal(c) * CENT),
            **{
                name: st.integers(0, 10_000).map(lambda c: Decimal(c) * CENT)
                for name in ("T1", "T2", "F")
            },
        }
    ),
    line=st.integers(0, 100_000).map(lambda c: Decimal(c) * CENT),
)
async def test_f9_random_money_operations_keep_the_ledger_sound(
    api: Api, redis: ArqRedis, operations: list[Op], opening: dict[str, Decimal], line: Decimal
) -> None:
    world = await build_world(api, redis, opening)
    if line:  # most examples start with an enterprise credit line (F6)
        assert (
            await run_direct(world, resolve(world, Op("credit_line", "M", int(line * 100)))) is None
        )
        assert world.model.set_credit_line(world.master, line) is None
    async with api.engine.connect() as conn:
        before = await snapshot(conn)
    for number, operation in enumerate(operations):
        step = resolve(world, operation)
        expected = expect(world.model, world.master, step)
        refused = await (run_api if operation.via_api else run_direct)(world, step)
        assert refused == expected, (number, step)
        event(f"{operation.kind}: {refused or 'done'}")  # --hypothesis-show-statistics
        async with api.engine.connect() as conn:
            await assert_ledger_rules(conn)
            after = await snapshot(conn)
        assert_matches_model(after, world.model, world.ids.values())
        if refused is not None:  # nothing changed, not even a journal entry
            assert after == before, (number, step)
        assert_transferred_cash_moves(world, step, refused, before, after)
        if operation.via_api or number == len(operations) - 1:
            await assert_quota_as_the_api_reports(world, after)
        before = after


async def test_f9_f2_worked_sequence_through_the_api(api: Api, redis: ArqRedis) -> None:
    """One fixed sequence through GraphQL only, so a Hypothesis run that happens to draw
    few API steps still covers every mutation's GraphQL path."""
    world = await build_world(
        api, redis, {"T1": Decimal("40.00"), "T2": ZERO, "F": Decimal("5.00")}
    )
    sequence = [
        Op("pay", "M", 50_000),
        Op("credit_line", "M", 100_000),
        Op("allocate", "T1", 10_000),
        Op("allocate", "F", 5_000, method="CREDIT"),
        Op("allocate", "T2", 100),
        Op("allocate", "S", 100),  # refused: grants, no link
        Op("charge", "T1", 12_000),
        Op("charge", "T1", 3_000, before_association=True),
        Op("reclaim", "T1", 1),
        Op("reclaim", "F", 5_000, method="CREDIT"),
        Op("credit_limit", "F", 20_000),
        Op("withdraw", "F", 500, actor="own"),
        Op("credit_limit", "F", "edge"),
        Op("withdraw", "T1", "all", actor="own"),
        Op("withdraw", "M", 100, actor="operator"),
        Op("adjust", "S", 500, bucket="NEGATIVE_BILL"),
        Op("adjust", "S", "over", bucket="UNSETTLED_AMOUNT", sign=-1),
        Op("charge", "S", 900),
        Op("pay", "S", 1_000),
        Op("credit_line", "M", "all"),
        Op("credit_line", "T1", 100),
        Op("allocate", "F", 1, method="CREDIT"),
        Op("reclaim", "T1", 10_001),
    ]
    outcomes = []
    for operation in sequence:
        step = resolve(world, replace(operation, via_api=True))
        expected = expect(world.model, world.master, step)
        refused = await run_api(world, step)
        assert refused == expected, step
        outcomes.append(refused)
        async with api.engine.connect() as conn:
            await assert_ledger_rules(conn)
            after = await snapshot(conn)
        assert_matches_model(after, world.model, world.ids.values())
        await assert_quota_as_the_api_reports(world, after)
    assert outcomes == [
        None,
        None,
        None,
        None,
        "PERMISSION_NOT_GRANTED",
        "NOT_FOUND",
        None,
        None,
        "EXCEEDS_UNSPENT",
        None,
        None,
        None,
        "QUOTA_WOULD_BE_NON_POSITIVE",
        None,
        "PERMISSION_NOT_GRANTED",
        None,
        "INSUFFICIENT_FUNDS",
        None,
        None,
        None,
        "INVALID_INPUT",
        "CREDIT_EXCEEDS_AVAILABLE",
        "EXCEEDS_NET_ALLOCATED",
    ]
    master, t1 = world.model.balances[world.master], world.model.balances[world.ids["T1"]]
    assert (master["CASH"], master["CREDIT_LINE"], master["CREDIT_LIMIT"]) == (
        Decimal("380.00"),
        Decimal("200.00"),
        ZERO,
    )
    assert (t1["CASH"], t1["TRANSFERRED_CASH"]) == (ZERO, ZERO)
