"""Look at what a query selects below a field, through fragments, to preload in batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection


def _fields(selections: Iterable[Selection]) -> Iterable[SelectedField]:
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        elif isinstance(selection, FragmentSpread | InlineFragment):
            yield from _fields(selection.selections)


def children(info: Any, *path: str) -> list[SelectedField]:
    """The fields selected at ``path`` below the current field (all branches merged)."""
    level: list[SelectedField] = list(_fields(info.selected_fields))
    level = [child for field in level for child in _fields(field.selections)]
    for name in path:
        level = [
            child for field in level if field.name == name for child in _fields(field.selections)
        ]
    return level


def selects(info: Any, *path: str) -> set[str]:
    """Names of the fields selected at ``path`` below the current field."""
    return {field.name for field in children(info, *path)}
