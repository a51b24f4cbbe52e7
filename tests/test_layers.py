"""Issue 11: the rules do not speak GraphQL. Importing every service module (and the
domain module they raise from) loads neither strawberry nor graphql-core."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

AREAS = ("accounts", "funds", "billing", "sharing", "alerts", "costs", "audit")
# An area's GraphQL: its types, queries, mutations, the loaders they use, its compiled
# fields and the subscription fan-out (alerts). Everything else in an area is rules, SQL
# and ports, and must not load GraphQL.
GRAPHQL_MODULES = re.compile(
    r"^(types|queries|mutations|loaders|account|compiled|fanout|\w+_(types|mutations|loaders))$"
)
SOURCE = Path(__file__).resolve().parent.parent / "src" / "accountgraph"


def rule_modules() -> list[str]:
    found = ["accountgraph.domain"]
    for area in AREAS:
        for path in sorted((SOURCE / area).glob("*.py")):
            if path.stem != "__init__" and not GRAPHQL_MODULES.match(path.stem):
                found.append(f"accountgraph.{area}.{path.stem}")
    return found


RULE_MODULES = rule_modules()
PROBE = """
import sys
for name in sys.argv[1:]:
    __import__(name)
roots = {m.split('.')[0] for m in sys.modules}
print(sorted(roots & {'strawberry', 'graphql'}))
"""


def test_service_modules_import_no_graphql() -> None:
    assert len(RULE_MODULES) > 40, RULE_MODULES  # the discovery found the areas' modules
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *RULE_MODULES], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_the_probe_would_see_a_graphql_import() -> None:
    """The check above can fail: a module that does import Strawberry is caught."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "accountgraph.api.errors"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "strawberry" in result.stdout
