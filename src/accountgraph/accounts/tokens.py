"""P1, P4: API tokens, and the principal a bearer token stands for.

A token is shown once, when it is created; only its SHA-256 is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.access import visible_account
from accountgraph.accounts.fields import checked_text
from accountgraph.accounts.models import accounts, api_tokens
from accountgraph.domain import DomainError, ErrorCode, Principal, PrincipalKind

TOKEN_PREFIX = "agt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def authenticate(
    conn: AsyncConnection, token: str, *, operator_token: str | None
) -> Principal | None:
    """The principal of a bearer token, or None for an unknown or revoked one."""
    if operator_token and hmac.compare_digest(token.encode(), operator_token.encode()):
        return Principal(PrincipalKind.OPERATOR, None, "operator:env")
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = (
        await conn.execute(
            select(api_tokens.c.account_id, api_tokens.c.name, accounts.c.name.label("account"))
            .select_from(api_tokens.outerjoin(accounts, accounts.c.id == api_tokens.c.account_id))
            .where(api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None))
        )
    ).one_or_none()
    if row is None:
        return None
    if row.account_id is None:
        return Principal(PrincipalKind.OPERATOR, None, f"operator:{row.name}")
    return Principal(PrincipalKind.ACCOUNT_USER, row.account_id, f"{row.account}:{row.name}")


async def create_token(
    conn: AsyncConnection, principal: Principal, *, account_id: int | None, name: str
) -> str:
    """P4: operators create tokens for anyone (None: an operator token); an account's users
    for their own account. The token is returned once; only its hash is kept."""
    name = checked_text(name, ["name"], required=True)
    if account_id is None:
        if not principal.is_operator:
            raise DomainError(
                ErrorCode.PERMISSION_NOT_GRANTED,
                "Only operators create operator tokens.",
                ["accountId"],
            )
    else:
        await visible_account(conn, principal, account_id, ["accountId"])
        if not principal.is_operator and principal.account_id != account_id:
            raise DomainError(
                ErrorCode.PERMISSION_NOT_GRANTED,
                "Tokens are created by the account's own users.",
                ["accountId"],
            )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        insert(api_tokens).values(
            account_id=account_id,
            name=name,
            token_hash=hash_token(token),
            created_by=principal.actor,
        )
    )
    return token


async def revoke(conn: AsyncConnection, token: str) -> list[str]:
    """The token authenticates nobody from now on; the hashes revoked (none: unknown or
    already revoked). After the commit, ``principals.announce_revoked`` tells every
    gateway to forget it."""
    rows = await conn.execute(
        update(api_tokens)
        .where(api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(api_tokens.c.token_hash)
    )
    return [row.token_hash for row in rows]
