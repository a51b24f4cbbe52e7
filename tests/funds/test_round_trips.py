"""F3/F4/F9 in few round trips: the statements an allocation sends do not creep back up.

Counted with the engine's statement hook (the app and the tests share it): the token's
principal is kept by the gateway, the pair is checked before and under the locks, the
balances are created and read in one statement, the entry with its postings, balances,
outbox rows and NOTIFY in one, the per-method total with the book record in one; then
the audit row (issue 15, its own autocommitted INSERT) and the payload's read.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import StatementCounter
from tests.funds.support import pair, pay
from tests.helpers import Api

ALLOCATE = """
mutation($input: TransferFundsInput!) {
  allocateFunds(input: $input) { transfer { id amount } userErrors { code } }
}"""

# The pair twice, the lock, the balances, the entry, the book record; the audit row; the
# payload's read.
MOST = 8


async def statements_of(api: Api, statements: StatementCounter, token: str, **input: Any) -> int:
    before = statements.count
    payload = await api.ok("allocateFunds", ALLOCATE, input, token)
    assert payload["transfer"] is not None
    return statements.count - before


async def test_f3_an_allocation_takes_few_statements(
    api: Api, statements: StatementCounter
) -> None:
    # given: the master's token has been used once (its principal is kept)
    enterprise = await pair(api)
    await pay(api, enterprise.master, "100.00")
    fields = {"masterId": enterprise.master, "memberId": enterprise.member, "method": "CASH"}
    await statements_of(api, statements, enterprise.master_token, amount="1.00", **fields)

    # when
    counted = await statements_of(api, statements, enterprise.master_token, amount="1.00", **fields)

    # then
    assert counted <= MOST, counted


async def test_f4_a_reclamation_takes_few_statements(
    api: Api, statements: StatementCounter
) -> None:
    enterprise = await pair(api)
    await pay(api, enterprise.master, "100.00")
    fields = {"masterId": enterprise.master, "memberId": enterprise.member, "method": "CASH"}
    await statements_of(api, statements, enterprise.master_token, amount="5.00", **fields)
    before = statements.count
    payload = await api.ok(
        "reclaimFunds",
        ALLOCATE.replace("allocateFunds", "reclaimFunds"),
        {**fields, "amount": "1.00"},
        enterprise.master_token,
    )
    assert payload["transfer"]["amount"] == "1.00"
    assert statements.count - before <= MOST + 1  # F4 also reads the net allocated
