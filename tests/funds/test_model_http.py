"""F9 with F2-F8, F10, U1, U3, U5, V1-V3 and W1, through HTTP only: a seeded random
driver where every step is a real GraphQL request to the app, and the reference ``Model``
of test_invariants.py predicts each outcome (the exact ErrorCode, or success) and every
balance, coupon and stored value card.

Steps: payments, allocations and reclamations (CASH and CREDIT, by the master, an
operator or the member), credit lines and limits, charges (some dated before the
association), withdrawals, balance adjustments, coupons and stored value cards issued,
voucher pools granted and vouchers created naming one or two members, and members
dissociated and associated again (refused while the member owes, U1). A
share of the money steps carry an idempotency key: the same request again must return
the same payload and change nothing, and after a success the same key with another amount
is IDEMPOTENCY_CONFLICT and changes nothing (F10).

After every step (and every retry) each account's balance row must equal the model; every
``VERIFY_EVERY`` steps and at the end the ledger rules (``verify``), the coupons' and
cards' remaining amounts, and F2 as the API reports it. 10,000 steps by default;
``HYPOTHESIS_PROFILE=long`` runs 100,000 (the nightly run), ACCOUNTGRAPH_MODEL_STEPS any
number. The seed is random unless ACCOUNTGRAPH_MODEL_SEED is set, and printed: a failure
names the seed and the step, and ``replay`` lists the operations, so it replays."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from arq.connections import ArqRedis
from sqlalchemy import func, select

from accountgraph.accounts.models import links
from accountgraph.api import ids
from accountgraph.billing.models import coupons, stored_value_cards, voucher_pools, vouchers
from accountgraph.config import Settings
from accountgraph.funds.models import BUCKETS, balances
from tests.funds.test_concurrency_process import gateway
from tests.funds.test_invariants import (
    ADJUSTABLE,
    CENT,
    MEMBERS,
    NAMES,
    TRANSFER_TARGETS,
    ZERO,
    Link,
    Op,
    World,
    assert_ledger_rules,
    assert_matches_model,
    assert_quota_as_the_api_reports,
    build_world,
    expect,
    money,
    request_of,
    resolve,
    snapshot,
)
from tests.helpers import DISSOCIATE, INVITE, OPERATOR_TOKEN, RESPOND, Api

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
STEPS = int(os.environ.get("ACCOUNTGRAPH_MODEL_STEPS", "100000" if LONG else "10000"))
SEED = int(os.environ.get("ACCOUNTGRAPH_MODEL_SEED", str(random.randrange(2**32))))
VERIFY_EVERY = 500
WORLDS = ("A", "B")  # two enterprises driven at once (their steps add up to STEPS)
KINDS = (
    *("pay", "allocate", "allocate", "allocate", "reclaim", "reclaim", "reclaim"),
    *("credit_line", "credit_limit", "charge", "charge", "withdraw", "adjust"),
    *("card", "coupon"),
)
KEYED = {"pay", "allocate", "reclaim", "credit_limit", "charge", "withdraw", "adjust"}
KEYED_SHARE = 0.15  # of those, sent with an idempotency key and then again
LINK_EVERY = 40  # about one step in 40 dissociates a member (or associates it again)
VOUCHER_EVERY = 25  # and one in 25 grants a voucher pool or creates a voucher
VOUCHERS_VALID = {
    "validFrom": "2020-01-01T00:00:00+00:00",
    "validUntil": "2100-01-01T00:00:00+00:00",
}
POOL = """mutation($input: GrantVoucherPoolInput!) { grantVoucherPool(input: $input) {
  userErrors { code } } }"""
VOUCHER = """mutation($input: CreateVoucherInput!) { createVoucher(input: $input) {
  voucher { id } userErrors { code } } }"""
# How each member joined in build_world, and joins again (U1): type and grants.
MEMBERSHIP = {
    "T1": ("TRUSTEESHIP", ["SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES"]),
    "T2": ("TRUSTEESHIP", ["VIEW_FINANCE"]),
    "F": ("FINANCIAL", ["SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES"]),
}


def one_of(rng: random.Random, *amounts: int | str) -> int | str:
    """Cents, or a limit the model knows when the step runs ("all", "over", "edge")."""
    return rng.choice(amounts)


def amount(rng: random.Random) -> int | str:
    return one_of(rng, "all", "over", rng.randint(1, 30_000))


def draw(rng: random.Random, unlinked: list[str], owing: list[str]) -> Op:
    """The next operation; a member that stands alone joins again soon (a few steps), one
    that owes tries now and then (U1 refuses it until it has paid)."""
    if unlinked and rng.random() < 0.2:
        return Op("link", rng.choice(unlinked))
    if owing and rng.random() < 0.02:
        return Op("link", rng.choice(owing))
    if rng.randrange(LINK_EVERY) == 0:
        return Op("link", rng.choice(MEMBERS), actor=rng.choice(["master", "member", "operator"]))
    if rng.randrange(VOUCHER_EVERY) == 0:  # V1: a pool for the master, or a voucher from it
        if rng.random() < 0.3:
            return Op("pool", "M", rng.randint(1, 20_000))
        named = rng.choice(["T1", "T2", "F", "T1+F", "T2+F", "S"])
        actor = rng.choice(["master", "master", "operator", "member"])
        return Op("voucher", named, one_of(rng, "all", "over", rng.randint(1, 5_000)), actor=actor)
    kind = rng.choice(KINDS)
    if kind == "pay":  # mostly the master, and larger: it funds the allocations
        large = one_of(rng, "all", rng.randint(1, 200_000))
        return Op(kind, rng.choice(["M", "M", *NAMES]), large, via_api=True)
    if kind in ("card", "coupon"):
        return Op(kind, rng.choice(NAMES), amount(rng), via_api=True)
    if kind in ("allocate", "reclaim"):
        return Op(
            kind,
            rng.choice(TRANSFER_TARGETS),
            one_of(rng, "all", "over", rng.randint(1, 5_000), rng.randint(1, 5_000)),
            method=rng.choice(["CASH", "CREDIT"]),
            actor=rng.choice(["master", "master", "master", "operator", "member"]),
            via_api=True,
            pick=rng.randint(0, 3) if kind == "reclaim" and rng.random() < 0.5 else None,
        )
    if kind == "credit_line":
        return Op(kind, rng.choice(["M", "M", "S", "T1"]), amount(rng), via_api=True)
    if kind == "credit_limit":
        limit = one_of(rng, "all", "over", "edge", rng.randint(0, 40_000))
        actor = rng.choice(["master", "master", "operator", "member"])
        return Op(kind, rng.choice(MEMBERS), limit, actor=actor, via_api=True)
    if kind == "charge":
        before = rng.random() < 0.3
        return Op(kind, rng.choice(NAMES), amount(rng), before_association=before, via_api=True)
    if kind == "withdraw":
        actor = rng.choice(["own", "own", "master", "operator"])
        return Op(kind, rng.choice(NAMES), amount(rng), actor=actor, via_api=True)
    bucket, sign = rng.choice(ADJUSTABLE), rng.choice([1, -1])
    return Op("adjust", rng.choice(NAMES), amount(rng), bucket=bucket, sign=sign, via_api=True)


@dataclass
class Driver:
    world: World
    rng: random.Random
    link_ids: dict[str, str]  # member name -> the global id of its latest link
    replay: list[Op]
    name: str = "A"
    retries: int = 0
    conflicts: int = 0
    dissociations: int = 0
    associations: int = 0
    refused_associations: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def api(self) -> Api:
        return self.world.api

    def where(self, number: int) -> str:
        return (
            f"seed={SEED} world={self.name} step={number} op={self.replay[-1]} replay={self.replay}"
        )

    async def codes(self, name: str, query: str, input: dict[str, Any], token: str) -> list[str]:
        payload = await self.api.mutate(name, query, input, token=token)
        return [error["code"] for error in payload["userErrors"]]

    async def money_step(self, number: int, operation: Op) -> None:
        world = self.world
        step = resolve(world, operation)
        expected = expect(world.model, world.master, step)
        name, query, input, token = request_of(world, step)
        keyed = operation.kind in KEYED and self.rng.random() < KEYED_SHARE
        if keyed:
            input = {**input, "idempotencyKey": f"model-{SEED}-{self.name}-{number}"}
        first = await self.api.mutate(name, query, input, token=token)
        codes = [error["code"] for error in first["userErrors"]]
        assert codes == ([expected] if expected else []), self.where(number)
        self.outcomes[f"{operation.kind} {expected or 'done'}"] += 1
        await self.assert_balances(number)
        if not keyed:
            return
        self.retries += 1  # F10: the same key and input again replay, or refuse again
        assert await self.api.mutate(name, query, input, token=token) == first, self.where(number)
        await self.assert_balances(number)
        if expected is None:  # the same key with another input: refused, nothing moves
            self.conflicts += 1
            field = "limit" if "limit" in input else "amount"
            other = {**input, field: money(Decimal(input[field]) + CENT)}
            assert await self.codes(name, query, other, token) == ["IDEMPOTENCY_CONFLICT"]
            await self.assert_balances(number)

    async def link_step(self, number: int, operation: Op) -> None:
        """U5 on an ACTIVE link (by the master, the member or an operator); otherwise U1:
        the master invites the member again and it accepts with its grants, refused with
        OUTSTANDING_FEES while it owes (then it declines)."""
        world, model = self.world, self.world.model
        member = world.ids[operation.account]
        tokens = {"master": world.tokens["M"], "member": world.tokens[operation.account]}
        if member in model.links:
            token = tokens.get(operation.actor, OPERATOR_TOKEN)
            link_input = {"linkId": self.link_ids[operation.account]}
            codes = await self.codes("dissociateMember", DISSOCIATE, link_input, token)
            assert codes == [], self.where(number)
            assert model.dissociate(member) is None
            self.dissociations += 1
            again = await self.codes("dissociateMember", DISSOCIATE, link_input, OPERATOR_TOKEN)
            assert again == [model.dissociate(member)] == ["LINK_NOT_ACTIVE"], self.where(number)
            await self.assert_balances(number)
            return
        type, grants = MEMBERSHIP[operation.account]
        invited = await self.api.mutate(
            "inviteMember",
            INVITE,
            {"masterId": world.gids["M"], "memberId": world.gids[operation.account], "type": type},
            token=world.tokens["M"],
        )
        assert invited["userErrors"] == [], self.where(number)
        link_id = invited["link"]["id"]
        refused = model.may_accept(member, type)
        respond = {"linkId": link_id, "accept": True, "permissions": grants}
        codes = await self.codes("respondToInvitation", RESPOND, respond, tokens["member"])
        assert codes == ([refused] if refused else []), self.where(number)
        if refused:
            self.refused_associations += 1
            decline = {"linkId": link_id, "accept": False}
            assert await self.codes("respondToInvitation", RESPOND, decline, tokens["member"]) == []
        else:
            self.associations += 1
            row_id = ids.decode_as(link_id, "Link")
            async with self.api.engine.connect() as conn:
                row = (await conn.execute(select(links).where(links.c.id == row_id))).one()
            assert row.status == "ACTIVE"
            model.former.discard(member)
            model.links[member] = Link(
                row.master_id, row.type, frozenset(row.permissions), row.activated_at
            )
            self.link_ids[operation.account] = link_id
        await self.assert_balances(number)

    async def voucher_step(self, number: int, operation: Op) -> None:
        """V1: an operator grants the master's pool; the master (or an operator; a
        member's users are refused) creates a voucher naming members, refused with
        NOT_FOUND for one that is not its ACTIVE member and INSUFFICIENT_FUNDS past the
        pool."""
        world, model = self.world, self.world.model
        master = world.master
        if operation.kind == "pool":
            amount = Decimal(operation.amount) * CENT
            codes = await self.codes(
                "grantVoucherPool",
                POOL,
                {"masterId": world.gids["M"], "amount": money(amount)},
                OPERATOR_TOKEN,
            )
            assert codes == [], self.where(number)
            model.pools[master] += amount
            return
        names = operation.account.split("+")
        members = [world.ids[name] for name in names]
        if isinstance(operation.amount, int):
            amount = Decimal(operation.amount) * CENT
        else:  # all of the pool, or a cent more
            amount = max(CENT, model.pools[master] + (CENT if operation.amount == "over" else 0))
        actor = {"master": master, "operator": None}.get(operation.actor, members[0])
        token = (
            OPERATOR_TOKEN
            if actor is None
            else world.tokens[next(name for name, account in world.ids.items() if account == actor)]
        )
        refused = model.create_voucher(actor, master, amount, members)
        voucher = {
            "masterId": world.gids["M"],
            "amount": money(amount),
            "memberIds": [world.gids[name] for name in names],
            **VOUCHERS_VALID,
        }
        codes = await self.codes("createVoucher", VOUCHER, voucher, token)
        assert codes == ([refused] if refused else []), self.where(number)
        self.outcomes[f"voucher {refused or 'done'}"] += 1

    async def assert_balances(self, number: int) -> None:
        model = self.world.model
        async with self.api.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(balances).where(balances.c.account_id.in_(self.world.ids.values()))
                )
            ).all()
        for row in rows:
            values = {b: getattr(row, c) for b, c in BUCKETS.items()}
            assert values == dict(model.balances[row.account_id]), self.where(number)

    async def assert_everything(self, number: int) -> None:
        world, model = self.world, self.world.model
        async with self.api.engine.connect() as conn:
            await assert_ledger_rules(conn)
            snap = await snapshot(conn)
            for table, held in ((coupons, model.coupons), (stored_value_cards, model.stored_value)):
                remaining = dict(
                    (
                        await conn.execute(
                            select(table.c.account_id, func.sum(table.c.remaining)).group_by(
                                table.c.account_id
                            )
                        )
                    ).all()
                )
                for account in world.ids.values():
                    assert remaining.get(account, ZERO) == held[account], self.where(number)
            own = vouchers.c.master_id == world.master
            left = (await conn.execute(select(func.sum(vouchers.c.remaining)).where(own))).scalar()
            assert (left or ZERO) == sum((v[0] for v in model.vouchers), ZERO), self.where(number)
            pool = (
                await conn.execute(
                    select(voucher_pools.c.granted - voucher_pools.c.used).where(
                        voucher_pools.c.master_id == world.master
                    )
                )
            ).scalar()
            assert (pool or ZERO) == model.pools[world.master], self.where(number)
        assert_matches_model(snap, model, world.ids.values(), alone=False)
        await assert_quota_as_the_api_reports(world, snap)


async def drive(driver: Driver, steps: int) -> None:
    """``steps`` steps of one world, checking as it goes."""
    world, rng = driver.world, driver.rng
    for number in range(steps):
        model = world.model
        alone = [name for name in MEMBERS if world.ids[name] not in model.links]
        owing = [name for name in alone if model.may_accept(world.ids[name], MEMBERSHIP[name][0])]
        operation = draw(rng, [name for name in alone if name not in owing], owing)
        driver.replay.append(operation)
        if operation.kind == "link":
            await driver.link_step(number, operation)
        elif operation.kind in ("pool", "voucher"):
            await driver.voucher_step(number, operation)
        else:
            await driver.money_step(number, operation)
        if number % VERIFY_EVERY == VERIFY_EVERY - 1 or number == steps - 1:
            await driver.assert_everything(number)
    model = world.model
    print(
        f"model {driver.name}: {steps} steps, {driver.retries} keyed retries, "
        f"{driver.conflicts} conflicts, {driver.dissociations} dissociations, "
        f"{driver.associations} associations ({driver.refused_associations} refused), "
        f"{model.transfers} transfers, {model.charges} charges, {model.payments} payments; "
        + ", ".join(f"{outcome} {n}" for outcome, n in sorted(driver.outcomes.items()))
    )
    if steps >= 2_000:  # the sequence reached the rules it is meant to cover
        assert driver.dissociations and driver.associations and driver.conflicts
        assert model.transfers and model.charges


async def test_f9_f10_u5_v2_seeded_random_steps_all_through_http(
    api: Api, redis: ArqRedis, settings: Settings, tmp_path: Path
) -> None:
    """Two worlds (enterprises of their own, models of their own), each driven by its own
    seeded walk at the same time, against ``accountgraph serve --workers 2`` in its own
    process: the app's work and the drivers' run on both cores. STEPS in all."""
    print(f"model: {STEPS} steps, seed {SEED} (ACCOUNTGRAPH_MODEL_SEED={SEED} replays them)")
    async with (
        gateway(settings, tmp_path / "gateway.log") as base,
        httpx.AsyncClient(base_url=base, timeout=60) as client,
    ):
        served = Api(client, api.engine)
        drivers = []
        for number, name in enumerate(WORLDS):
            opening = {"M": Decimal("1000.00"), "T1": Decimal("40.00"), "F": Decimal("5.00")}
            world = await build_world(served, redis, opening, prefix=name, empty_first=not number)
            async with api.engine.connect() as conn:
                found = select(links.c.id, links.c.member_id).where(
                    links.c.master_id == world.master
                )
                rows = (await conn.execute(found)).all()
            names = {account: name for name, account in world.ids.items()}
            link_ids = {names[r.member_id]: ids.encode("Link", r.id) for r in rows}
            drivers.append(Driver(world, random.Random(SEED + number), link_ids, [], name))
        await asyncio.gather(*(drive(driver, STEPS // len(WORLDS)) for driver in drivers))
