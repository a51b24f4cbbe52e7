"""F9: `accountgraph verify-ledger` recomputes balances from postings and reports drift."""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy import text

from accountgraph.config import Settings
from tests.funds.test_flow import PAY
from tests.helpers import Api


async def run_verify(settings: Settings) -> tuple[int, str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url or ""}
    env.pop("REDIS_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "accountgraph.cli",
        "--log-level",
        "WARNING",
        "verify-ledger",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_f9_verify_ledger_is_clean_after_real_operations(
    api: Api, settings: Settings
) -> None:
    account = await api.account("Payer")
    await api.ok("recordPayment", PAY, {"accountId": account, "amount": "12.34"})

    code, output = await run_verify(settings)

    assert code == 0, output
    assert "0 difference(s)" in output


async def test_f9_verify_ledger_reports_a_balance_that_drifted(
    api: Api, settings: Settings
) -> None:
    account = await api.account("Payer")
    await api.ok("recordPayment", PAY, {"accountId": account, "amount": "12.34"})
    async with api.engine.begin() as conn:  # what no service may do: edit a balance alone
        await conn.execute(text("UPDATE balances SET cash_balance = cash_balance + 1"))

    code, output = await run_verify(settings)

    assert code == 1
    assert "CASH: balance 13.34 but postings sum to 12.34" in output


async def test_f9_database_refuses_an_unbalanced_entry(api: Api) -> None:
    account = await api.account("Payer")
    async with api.engine.connect() as conn:
        await conn.execute(
            text("INSERT INTO journal_entries (kind, actor) VALUES ('ADJUSTMENT', 'test')")
        )
        await conn.execute(
            text(
                "INSERT INTO postings (entry_id, account_id, bucket, amount) "
                "VALUES (1, 1, 'CASH', 5)"
            )
        )
        try:
            await conn.commit()
            raise AssertionError("an unbalanced entry was committed")
        except Exception as error:  # the deferred trigger fires at COMMIT
            assert "does not balance" in str(error)
    assert account
