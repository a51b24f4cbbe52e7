"""Every table of every area, imported in one place for Alembic and the tests.

The tables are SQLModel table models; ``metadata`` is SQLModel's own MetaData, which
``accountgraph.db`` gives the project's naming convention.
"""

from __future__ import annotations

from accountgraph import outbox as _outbox  # noqa: F401
from accountgraph.accounts import models as _accounts  # noqa: F401
from accountgraph.alerts import models as _alerts  # noqa: F401
from accountgraph.audit import models as _audit  # noqa: F401
from accountgraph.billing import models as _billing  # noqa: F401
from accountgraph.costs import models as _costs  # noqa: F401
from accountgraph.db import metadata
from accountgraph.funds import models as _funds  # noqa: F401
from accountgraph.sharing import models as _sharing  # noqa: F401

__all__ = ["metadata"]
