"""Imports every area module that registers outbox handlers, for the worker to load."""

from __future__ import annotations

from accountgraph.alerts import delivery as _delivery  # noqa: F401  (A4 delivery)
from accountgraph.alerts import service as _alerts  # noqa: F401  (A2 evaluation, A4 publish)
from accountgraph.sharing import service as _sharing  # noqa: F401  (S11 recalculation)
