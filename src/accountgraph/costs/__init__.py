"""C1-C6: the cost center (cost analysis, budgets and their alerts, recommendations,
charts). It sits above billing and alerts: it reads charges from funds, user groups and
resources from sharing, and notifies through alerts, each through its public module."""

from accountgraph.costs import public as _public  # noqa: F401  (the C4 outbox handler)
