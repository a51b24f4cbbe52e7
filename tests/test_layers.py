"""Issue 11: the rules do not speak GraphQL. Importing every service module (and the
domain module they raise from) loads neither strawberry nor graphql-core."""

from __future__ import annotations

import subprocess
import sys

RULE_MODULES = [
    "accountgraph.domain", "accountgraph.accounts.service", "accountgraph.accounts.visibility",
    "accountgraph.funds.service", "accountgraph.funds.ledger", "accountgraph.funds.balances",
    "accountgraph.funds.idempotency", "accountgraph.billing.service",
    "accountgraph.billing.vouchers", "accountgraph.billing.credits",
    "accountgraph.billing.payment_methods", "accountgraph.alerts.service",
    "accountgraph.alerts.delivery", "accountgraph.alerts.webhook_guard",
    "accountgraph.sharing.service", "accountgraph.sharing.compute",
]
PROBE = """
import sys
for name in sys.argv[1:]:
    __import__(name)
roots = {m.split('.')[0] for m in sys.modules}
print(sorted(roots & {'strawberry', 'graphql'}))
"""


def test_service_modules_import_no_graphql() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, *RULE_MODULES], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_probe_would_see_a_graphql_import() -> None:
    """The check above can fail: a module that does import Strawberry is caught."""
    result = subprocess.run([sys.executable, "-c", PROBE, "accountgraph.api.errors"],
                            capture_output=True, text=True, check=True)
    assert "strawberry" in result.stdout
