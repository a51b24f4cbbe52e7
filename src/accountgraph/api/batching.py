"""Put batch-loaded rows back in key order: None for missing keys, [] for empty lists."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.api.auth import Principal
from accountgraph.db import reading

K = TypeVar("K", bound=Hashable)


def by_key(keys: Sequence[K], rows: Sequence[Any], key: Callable[[Any], K]) -> list[Any | None]:
    found = {key(row): row for row in rows}
    return [found.get(k) for k in keys]


def grouped(keys: Sequence[K], rows: Sequence[Any], key: Callable[[Any], K]) -> list[list[Any]]:
    groups: dict[K, list[Any]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return [groups.get(k, []) for k in keys]


class AreaLoaders:
    """The per-request loaders of one area: its DataLoaders are its attributes."""

    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        self.engine = engine
        self.principal = principal

    def clear(self) -> None:
        """After a mutation: forget everything this request has loaded."""
        for value in vars(self).values():
            if isinstance(value, DataLoader):
                value.clear_all()

    async def _all(self, query: Executable) -> Sequence[Any]:
        """One batch query on a connection of its own (loaders of one tick run at once)."""
        async with reading(self.engine) as conn:
            rows: Sequence[Any] = (await conn.execute(query)).all()
            return rows
