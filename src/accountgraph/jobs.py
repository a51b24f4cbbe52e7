"""Imports every area module that registers outbox handlers, for the worker to load."""

from __future__ import annotations

from accountgraph.sharing import service as _sharing  # noqa: F401  (S11 recalculation)
