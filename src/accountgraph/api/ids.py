"""Opaque global ids: base64url of ``"<Type>:<row id>"``, the same in every field."""

from __future__ import annotations

import base64
import binascii


def encode(type_name: str, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{row_id}".encode()).decode().rstrip("=")


def decode(global_id: str) -> tuple[str, int] | None:
    """``(type, row id)`` or None for anything that is not one of our ids."""
    if not isinstance(global_id, str) or not 0 < len(global_id) <= 100:
        return None
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, _, number = raw.partition(":")
    if not type_name or not number.isascii() or not number.isdigit() or len(number) > 18:
        return None
    return type_name, int(number)


def decode_as(global_id: str, type_name: str) -> int | None:
    """The row id if ``global_id`` names a ``type_name``, else None."""
    decoded = decode(global_id)
    if decoded is None or decoded[0] != type_name:
        return None
    return decoded[1]
