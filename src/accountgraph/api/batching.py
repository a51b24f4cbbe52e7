"""Put batch-loaded rows back in key order: None for missing keys, [] for empty lists."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


def by_key(keys: Sequence[K], rows: Sequence[Any], key: Callable[[Any], K]) -> list[Any | None]:
    found = {key(row): row for row in rows}
    return [found.get(k) for k in keys]


def grouped(keys: Sequence[K], rows: Sequence[Any], key: Callable[[Any], K]) -> list[list[Any]]:
    groups: dict[K, list[Any]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return [groups.get(k, []) for k in keys]
