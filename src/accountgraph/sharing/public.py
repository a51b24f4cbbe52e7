"""The sharing area's public surface: the only module of it that other areas may import.

Sharing uses accounts (through ``accounts.public``); no area uses sharing. What it gives
the accounts area is its part of that area's ports, registered when this module is
imported (sharing's package imports it, so any use of sharing registers it):

- U5/S9: when a link is dissociated, the member leaves its master's user groups
  (``groups.leave_master_groups``).
"""

from __future__ import annotations

from accountgraph.accounts.public import on_dissociate
from accountgraph.sharing.groups import leave_master_groups
from accountgraph.sharing.reads import group_members, unshared_resource_types, user_groups_of

on_dissociate(leave_master_groups)

__all__ = ["group_members", "unshared_resource_types", "user_groups_of"]
