"""The audit area's public surface: what the worker's retention job calls."""

from __future__ import annotations

from accountgraph.audit.log import MIN_RETENTION_DAYS, purge

__all__ = ["MIN_RETENTION_DAYS", "purge"]
