"""Payloads that several areas' mutations return: the account(s) a change touched, and
the shell of the batches that answer a list of accounts (``mutate_accounts``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.api import composed
from accountgraph.api.auth import principal_of
from accountgraph.api.composed import AccountRef
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import perform
from accountgraph.domain import DomainError, Principal

Batch = Callable[[AsyncConnection, Principal], Awaitable[tuple[list[int], list[DomainError]]]]


@strawberry.type
class AccountPayload:
    account: AccountRef | None
    user_errors: list[UserError]


@strawberry.type
class AccountsPayload:
    """Batch operations: the accounts that changed; the refused ones as userErrors."""

    accounts: list[AccountRef]
    user_errors: list[UserError]


async def mutate_accounts(info: strawberry.Info[Any, Any], work: Batch) -> AccountsPayload:
    """The batches' exception to ``mutate``: not one object by id but the accounts the
    work changed, and besides any refusal of the whole the accounts refused one by one
    (A1 quota alerts, S3 accepted types, I2/I3 invoice information)."""
    principal = principal_of(info)
    result, errors = await perform(info, lambda conn: work(conn, principal))
    changed, refused = result if result is not None else ([], [])
    return AccountsPayload(
        accounts=await composed.accounts(info, changed),
        user_errors=errors + [UserError.of(error) for error in refused],
    )
