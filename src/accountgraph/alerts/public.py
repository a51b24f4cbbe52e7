"""The alerts area's public surface: the only module of it that other areas may import.

Alerts uses accounts and funds (through their public modules) and no area uses it. The
assembly reaches it here: the workers' periodic sweep (A2) and the pub/sub channel of
live notifications (A4). Importing this module registers alerts' outbox handlers (A2
evaluation on ``funds.public.QUOTA_TOPIC``, A4 delivery and publishing).
"""

from __future__ import annotations

from accountgraph.alerts import delivery as _delivery  # noqa: F401  (A4 delivery handler)
from accountgraph.alerts.service import PUBSUB_CHANNEL, notify_budget, sweep

__all__ = ["PUBSUB_CHANNEL", "notify_budget", "sweep"]
