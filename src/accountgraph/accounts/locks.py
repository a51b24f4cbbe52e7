"""The one account-lock helper: every service that must serialise on accounts takes it.

Rows are locked in ascending id order, the one order every service uses, so two
operations over the same accounts never deadlock. The lock is FOR NO KEY UPDATE: it
excludes every other holder of this lock (and FOR UPDATE / FOR SHARE), which is all the
services need, since none of them changes an account's id or deletes an account; unlike
FOR UPDATE it does not block the foreign-key checks (FOR KEY SHARE) of rows inserted
elsewhere that only reference the account (postings, tokens, sharing settings, ...).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.models import accounts


async def lock_accounts(conn: AsyncConnection, *account_ids: int) -> None:
    """Lock the accounts' rows until the transaction ends (ascending ids; no deadlock)."""
    await conn.execute(
        select(accounts.c.id)
        .where(accounts.c.id.in_(sorted(set(account_ids))))
        .order_by(accounts.c.id)
        .with_for_update(key_share=True)
    )
