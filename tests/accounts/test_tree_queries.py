"""No N+1: the SQL statements of a nested tree query do not grow with the tree's width."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import StatementCounter
from tests.helpers import Api

TREE = """
query Tree {
  viewer {
    account {
      name
      members(first: 500) {
        totalCount
        edges { node {
          name role
          link { status permissions }
          sites { name billTo { name isPrimary } }
          billTos { name }
          primaryBillTo { name }
        } }
      }
    }
  }
}"""


async def build_tree(api: Api, members: int) -> str:
    """A master with ``members`` ACTIVE members, each with 2 bill-tos and 2 sites (bulk SQL:
    the API path for these writes is covered by the rule tests)."""
    master = await api.account("Master")
    async with api.engine.begin() as conn:
        await conn.execute(
            text("""
            WITH new_accounts AS (
              INSERT INTO accounts (name, display_name)
              SELECT 'Member-' || n, 'Member ' || n FROM generate_series(1, :count) AS n
              RETURNING id),
            new_links AS (
              INSERT INTO links (master_id, member_id, type, status, permissions, activated_at)
              SELECT 1, id, 'TRUSTEESHIP', 'ACTIVE', '{VIEW_FINANCE}', now() FROM new_accounts),
            new_bill_tos AS (
              INSERT INTO bill_tos (account_id, name, is_primary)
              SELECT id, 'Bill-to ' || b, b = 1 FROM new_accounts, generate_series(1, 2) AS b
              RETURNING id, account_id)
            INSERT INTO sites (account_id, name, bill_to_id)
            SELECT account_id, 'Site of ' || id, id FROM new_bill_tos
        """),
            {"count": members},
        )
    return await api.token(master)


async def count_statements(api: Api, token: str, statements: StatementCounter) -> int:
    before = statements.count
    data = await api.gql(TREE, token=token)
    assert data["viewer"]["account"]["members"]["edges"][0]["node"]["sites"]
    return statements.count - before


async def test_tree_query_statement_count_is_the_same_for_10_and_200_members(
    api: Api, statements: StatementCounter
) -> None:
    token = await build_tree(api, 10)
    small = await count_statements(api, token, statements)

    async with api.engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE accounts, links, bill_tos, sites, api_tokens RESTART IDENTITY CASCADE")
        )
    token = await build_tree(api, 200)
    large = await count_statements(api, token, statements)

    assert small == large
    assert small <= 6  # token, viewer account, members page, bill-tos, sites, links
