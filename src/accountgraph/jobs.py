"""Imports every area's public module, for the worker (and the gateway) to load: that
registers the areas' outbox handlers (A2 evaluation, A4 delivery and publishing, S11
recalculation, C4 budgets) and their parts of the lower areas' ports (U1 outstanding fees, U5
dissociation, V2 charge instruments, B5 payer)."""

from __future__ import annotations

from accountgraph.accounts import public as _accounts  # noqa: F401
from accountgraph.alerts import public as _alerts  # noqa: F401  (A2, A4 handlers)
from accountgraph.billing import public as _billing  # noqa: F401  (V2, B5 ports of funds)
from accountgraph.costs import public as _costs  # noqa: F401  (C4 handler)
from accountgraph.funds import public as _funds  # noqa: F401  (U1 port of accounts)
from accountgraph.sharing import public as _sharing  # noqa: F401  (S11 handler, U5 port)
