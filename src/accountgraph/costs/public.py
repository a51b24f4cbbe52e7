"""The cost center's public surface: the only module of it that others may import.

The cost center is at the top of the areas: it uses accounts, funds, sharing and alerts
(through their public modules) and no area uses it. The assembly reaches it here: the
workers' periodic budget sweep (C4) and the chart route (C6). Importing this module
registers its outbox handlers (C4 evaluation on ``funds.public.CHARGE_TOPIC`` and the
delayed ``budgets.evaluate``).
"""

from __future__ import annotations

from accountgraph.costs.budgets import evaluate as evaluate_budgets
from accountgraph.costs.budgets import sweep as sweep_budgets
from accountgraph.costs.charts import cost_chart_route

__all__ = ["cost_chart_route", "evaluate_budgets", "sweep_budgets"]
