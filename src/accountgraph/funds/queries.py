"""``node(id)`` resolution for the money types."""

from __future__ import annotations

from typing import Any

import strawberry

from accountgraph.api import node
from accountgraph.funds.types import Charge, Transfer, loaders


async def transfer_node(info: strawberry.Info[Any, Any], row_id: int) -> Transfer | None:
    row = await loaders(info).transfer_by_id.load(row_id)
    return None if row is None else Transfer.from_row(row)


async def charge_node(info: strawberry.Info[Any, Any], row_id: int) -> Charge | None:
    row = await loaders(info).charge_by_id.load(row_id)
    return None if row is None else Charge.from_row(row)


node.register("Transfer", transfer_node)
node.register("Charge", charge_node)
