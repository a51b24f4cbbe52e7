"""Smoke: the app answers over real HTTP with real PostgreSQL behind it."""

from __future__ import annotations

from tests.helpers import Api, enterprise


async def test_master_reads_its_tree(api: Api) -> None:
    given = await enterprise(api, 2, sites=True)
    data = await api.gql(
        "{ viewer { account { name members { totalCount edges { node { name sites { name billTo"
        " { name } } } } } } } }",
        token=given.master_token,
    )
    members = data["viewer"]["account"]["members"]
    assert members["totalCount"] == 2
    assert [e["node"]["name"] for e in members["edges"]] == ["Member-1", "Member-2"]
    assert members["edges"][0]["node"]["sites"] == [
        {"name": "Member-1 site", "billTo": {"name": "Member-1 AP"}}
    ]
