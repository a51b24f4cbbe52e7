"""Issue 15, upgrades: the previous release's gateway and worker keep working on the
schema of this one (CONTRIBUTING.md, "Adding a migration": expand, deploy, contract).

During a deploy the new release migrates the database first, and the gateways and
workers of the previous release keep serving until they are replaced. So this test takes
the code of the previous release out of git — the parent of the commit that added the
newest migration, i.e. the last code that knew only the previous head — and runs it,
as its own ``accountgraph serve`` process with its in-process worker, against a database
migrated to this release's head. It exercises a path of every area through HTTP
(accounts and links, payments and allocations, credit, charges with quota alerts, cost
center budgets, sharing, a bill cycle and the tree read), checks that every background
job the old worker took finished without an error, then lets this release's gateway
read the same data and verify the ledger.

``ACCOUNTGRAPH_UPGRADE_FROM=<commit>`` tests another starting point.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from accountgraph.db import make_engine
from tests.conftest import free_port, new_database
from tests.helpers import OPERATOR_TOKEN, Api

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = "src/accountgraph/migrations/versions"
TREE = """query($id: ID!) { account(id: $id) { id name finance { cashBalance availableQuota }
  members(first: 10) { edges { node { id name finance { cashBalance } } } } } }"""
CHARGE = """mutation($input: RecordChargeInput!) { recordCharge(input: $input) {
  charge { id } userErrors { code field message } } }"""
PAY = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) {
  account { id } userErrors { code field message } } }"""
ALLOCATE = """mutation($input: TransferFundsInput!) { allocateFunds(input: $input) {
  transfer { id } userErrors { code field message } } }"""
CREDIT_LINE = """mutation($input: SetCreditLineInput!) { setCreditLine(input: $input) {
  account { id } userErrors { code field message } } }"""
ALERTS = """mutation($input: SetQuotaAlertsInput!) { setQuotaAlerts(input: $input) {
  userErrors { code field message } } }"""
COST_CENTER = """mutation($input: UpdateAccountInput!) { updateAccount(input: $input) {
  account { id } userErrors { code field message } } }"""
BUDGET = """mutation($input: SetBudgetInput!) { setBudget(input: $input) {
  budget { id } userErrors { code field message } } }"""
RESOURCE = """mutation($input: CreateResourceInput!) { createResource(input: $input) {
  resource { id } userErrors { code field message } } }"""
BILL_CYCLE = """mutation($input: RunBillCycleInput!) { runBillCycle(input: $input) {
  invoices { id total } userErrors { code field message } } }"""
NOTIFICATIONS = """query($id: ID!) { account(id: $id) {
  notifications(first: 20) { edges { node { kind } } } } }"""


def tail(log: Path, size: int = 4000) -> str:
    return log.read_text(errors="replace")[-size:]


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def previous_release() -> str:
    """The commit before the one that added the newest migration file: the last code
    that knew only the previous head."""
    chosen = os.environ.get("ACCOUNTGRAPH_UPGRADE_FROM")
    if chosen:
        return git("rev-parse", chosen)
    newest = max(path.name for path in (ROOT / VERSIONS).glob("[0-9]*.py"))
    added = git("log", "--diff-filter=A", "--format=%H", "-1", "--", f"{VERSIONS}/{newest}")
    # Not committed yet (a migration being written): the last commit is the previous release.
    return git("rev-parse", f"{added}^" if added else "HEAD")


@pytest.fixture(scope="module")
def old_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The previous release's ``src`` and ``workers``, extracted from git."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the previous release cannot be read from history")
    commit = previous_release()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "src", "workers"],
        check=True,
        capture_output=True,
    ).stdout
    folder = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import accountgraph, workers; print(accountgraph.__file__, workers.__file__)",
        ],
        env={**os.environ, "PYTHONPATH": code_path(folder)},
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(Path(found).is_relative_to(folder) for found in probe.stdout.split()), probe.stdout
    yield commit, folder


def code_path(tree: Path) -> str:
    """PYTHONPATH that puts a release's tree before the installed checkout."""
    return os.pathsep.join([str(tree / "src"), str(tree)])


@pytest.fixture
async def head_database(server_url: str) -> AsyncIterator[str]:
    """A database of its own, migrated to this release's head."""
    async with new_database(server_url, "accountgraph_upgrade", migrate=True) as url:
        yield url


@contextlib.asynccontextmanager
async def gateway(
    database_url: str, redis_url: str, log: Path, code: Path | None
) -> AsyncIterator[httpx.AsyncClient]:
    """``accountgraph serve --no-migrate`` with its in-process worker, from ``code`` (a
    release's extracted tree) or from this checkout."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ACCOUNTGRAPH_QUEUE": f"accountgraph:upgrade:{uuid.uuid4().hex[:8]}",
        "ACCOUNTGRAPH_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "ACCOUNTGRAPH_OUTBOX_POLL_S": "0.2",
        "ACCOUNTGRAPH_LOG_FORMAT": "text",
        "ACCOUNTGRAPH_RATE_LIMIT_COST_PER_MINUTE": "0",
    }
    if code is not None:  # the old tree first on the path, before the installed checkout
        env["PYTHONPATH"] = code_path(code)
    command = [sys.executable, "-m", "accountgraph.cli", "serve", "--no-migrate", "--worker"]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - one child, stopped below
            [*command, "--port", str(port)],
            env=env,
            cwd=code or ROOT,  # `-m` puts the working folder first on the path
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False
        ) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, tail(log)
                assert time.monotonic() < deadline, tail(log)
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
            yield client
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def drained(database_url: str, log: Path) -> list[str]:
    """Waits until every outbox row is done; the topics of those left after 60 s."""
    engine = make_engine(database_url, pool_size=1)
    try:
        deadline = time.monotonic() + 60
        while True:
            async with engine.connect() as conn:
                left = (
                    await conn.execute(
                        text(
                            "SELECT topic FROM outbox WHERE done_at IS NULL "
                            "AND (not_before IS NULL OR not_before <= now() + interval '2 s')"
                        )
                    )
                ).scalars()
                topics = sorted(left)
            if not topics or time.monotonic() > deadline:
                return topics
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


async def exercise(api: Api) -> tuple[str, str]:
    """One path through every area, as a frontend and finance staff would; the master's
    and the member's ids."""
    master, member = await api.account("Upgrade master"), await api.account("Upgrade member")
    await api.link(master, member)
    await api.ok("recordPayment", PAY, {"accountId": master, "amount": "1000.00"})
    await api.ok(
        "allocateFunds",
        ALLOCATE,
        {"masterId": master, "memberId": member, "amount": "300.00", "method": "CASH"},
    )
    await api.ok("setCreditLine", CREDIT_LINE, {"masterId": master, "amount": "500.00"})
    await api.ok(
        "setQuotaAlerts", ALERTS, {"accountIds": [member], "threshold": "250.00", "enabled": True}
    )
    await api.ok("updateAccount", COST_CENTER, {"accountId": master, "costCenterEnabled": True})
    await api.ok(
        "setBudget",
        BUDGET,
        {
            "accountId": master,
            "name": "Upgrade budget",
            "amount": "100.00",
            "period": "MONTHLY",
            "thresholds": [{"basis": "ACTUAL", "percent": "50"}],
        },
    )
    await api.ok(
        "createResource",
        RESOURCE,
        {
            "ownerId": master,
            "type": "RESERVED_INSTANCE",
            "name": "ri-upgrade",
            "capacity": "10",
            "validFrom": "2026-01-01T00:00:00+00:00",
            "validUntil": "2036-01-01T00:00:00+00:00",
        },
    )
    for amount in ("40.00", "30.00"):  # A1 below 250.00 at the second; C4 over 50 %
        await api.ok(
            "recordCharge",
            CHARGE,
            {"accountId": member, "amount": amount, "description": "upgrade usage"},
        )
    today = datetime.now(UTC).date()
    start, end = today.replace(day=1).isoformat(), (today + timedelta(days=1)).isoformat()
    payload = await api.mutate(
        "runBillCycle", BILL_CYCLE, {"accountId": master, "periodStart": start, "periodEnd": end}
    )
    assert payload["userErrors"] == [], payload
    return master, member


async def test_the_previous_release_runs_on_this_release_schema(
    old_code: tuple[str, Path], head_database: str, redis_url: str, tmp_path: Path
) -> None:
    commit, tree = old_code
    old_log, new_log = tmp_path / "previous.log", tmp_path / "current.log"
    async with gateway(head_database, redis_url, old_log, tree) as client:
        api = Api(client, None)  # type: ignore[arg-type]
        master, member = await exercise(api)
        old_view = await api.gql(TREE, {"id": master})
        left = await drained(head_database, old_log)
    output = tail(old_log, 1_000_000)
    assert left == [], (
        f"jobs the previous release ({commit[:10]}) could not finish: {left}\n" + (output[-4000:])
    )
    assert "Traceback" not in output, output[-4000:]
    assert "job failed" not in output, output[-4000:]

    async with gateway(head_database, redis_url, new_log, None) as client:
        api = Api(client, None)  # type: ignore[arg-type]
        assert await api.gql(TREE, {"id": master}) == old_view
        kinds = [
            edge["node"]["kind"]
            for edge in (await api.gql(NOTIFICATIONS, {"id": member}))["account"]["notifications"][
                "edges"
            ]
        ]
        assert "LOW_QUOTA" in kinds  # the old worker evaluated A1 on the new schema
    verify = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "accountgraph.cli", "--log-level", "WARNING", "verify-ledger"),
        env={**os.environ, "DATABASE_URL": head_database},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    found, _ = await verify.communicate()
    assert verify.returncode == 0, found.decode()
