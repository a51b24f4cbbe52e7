"""F3, F4, F7, F8 end to end: one enterprise's money through the API."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.funds.verify import verify
from tests.helpers import Api, enterprise

PAY = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) {
  account { finance { cashBalance } } userErrors { code field message } } }"""
ALLOCATE = """mutation($input: TransferFundsInput!) { allocateFunds(input: $input) {
  transfer { id amount method direction } master { finance { cashBalance } }
  member { finance { cashBalance transferredCash availableQuota } }
  userErrors { code field message } } }"""
CHARGE = """mutation($input: RecordChargeInput!) { recordCharge(input: $input) {
  charge { id amount paidByMaster } account { finance { cashBalance transferredCash } }
  userErrors { code field message } } }"""
FINANCE = """query($id: ID!) { account(id: $id) { finance {
  cashBalance transferredCash outstandingFees availableQuota frozenCash creditLine } } }"""


async def assert_ledger_sound(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await verify(conn) == []


async def test_f3_f7_allocate_then_charge_a_trusteeship_member(api: Api) -> None:
    given = await enterprise(api, 1)
    member = given.members[0]
    await api.ok("recordPayment", PAY, {"accountId": given.master, "amount": "100.00"})

    payload = await api.ok(
        "allocateFunds",
        ALLOCATE,
        {"masterId": given.master, "memberId": member, "amount": "30.50"},
        token=given.master_token,
    )
    assert payload["transfer"]["amount"] == "30.50"
    assert payload["master"]["finance"]["cashBalance"] == "69.50"
    assert payload["member"]["finance"] == {
        "cashBalance": "30.50",
        "transferredCash": "30.50",
        "availableQuota": "30.50",
    }

    charged = await api.ok(
        "recordCharge", CHARGE, {"accountId": member, "amount": "40.00", "description": "compute"}
    )
    assert charged["charge"]["paidByMaster"] == "9.50"
    assert charged["account"]["finance"] == {"cashBalance": "0.00", "transferredCash": "0.00"}
    master = (await api.gql(FINANCE, {"id": given.master}))["account"]["finance"]
    assert master["cashBalance"] == "60.00"
    await assert_ledger_sound(api.engine)


async def test_f1_an_account_that_never_had_money_shows_zero_balances(api: Api) -> None:
    account = await api.account("New")

    finance = (await api.gql(FINANCE, {"id": account}))["account"]["finance"]

    assert finance == {
        "cashBalance": "0.00",
        "transferredCash": "0.00",
        "outstandingFees": "0.00",
        "availableQuota": "0.00",
        "frozenCash": "0.00",
        "creditLine": "0.00",
    }
