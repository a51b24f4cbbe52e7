"""The Node interface, and ``node(id)`` through a registry.

Each area registers how to load its node types by row id (``register``) when its GraphQL
module is imported; ``Query.node`` and any area that must return another area's object
(a payload's ``account``, a charge's ``site``) load it here by type name, so no area
imports another area's GraphQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry

Info = strawberry.Info[Any, Any]
LoadOne = Callable[[Info, int], Awaitable[Any]]
LoadMany = Callable[[Info, list[int]], Awaitable[list[Any]]]


@strawberry.interface(description="An object with a global, opaque id.")
class Node:
    id: strawberry.ID


_ONE: dict[str, LoadOne] = {}
_MANY: dict[str, LoadMany] = {}


def register(type_name: str, one: LoadOne, many: LoadMany | None = None) -> None:
    """``one(info, row_id)`` returns the object or None where the viewer may not see it;
    ``many(info, row_ids)`` the visible ones in one batch (by default ``one`` per id)."""
    if _ONE.get(type_name, one) is not one:
        raise ValueError(f"node type {type_name} registered twice")
    _ONE[type_name] = one
    if many is not None:
        _MANY[type_name] = many


def registered(type_name: str) -> bool:
    return type_name in _ONE


async def load(info: Info, type_name: str, row_id: int) -> Any:
    return await _ONE[type_name](info, row_id)


async def load_many(info: Info, type_name: str, row_ids: list[int]) -> list[Any]:
    if type_name in _MANY:
        return await _MANY[type_name](info, row_ids)
    found = [await _ONE[type_name](info, row_id) for row_id in row_ids]
    return [node for node in found if node is not None]
