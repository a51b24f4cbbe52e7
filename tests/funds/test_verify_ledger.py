"""F9: `accountgraph verify-ledger` recomputes balances from postings and reports drift."""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy import text

from accountgraph.config import Settings
from accountgraph.db import make_engine
from tests.conftest import new_database
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


async def test_b4_verify_ledger_reports_an_invoiced_charge_on_no_line(server_url: str) -> None:
    """invoiced_charges has no foreign keys (0012): verify-ledger checks what they held.
    A database of its own: the bad row cannot be removed (the table is append-only)."""
    async with new_database(server_url, "accountgraph_verify", migrate=True) as url:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO invoiced_charges (charge_id, line_id) VALUES (1, 999)")
                )
        finally:
            await engine.dispose()

        code, output = await run_verify(Settings(DATABASE_URL=url))

    assert code == 1, output
    assert "1 invoiced charge(s) on no invoice line" in output
