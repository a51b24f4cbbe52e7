"""F1-F10, U2-U4 (money): journal, balances, transfers, credit, charges, payments.

Other areas use funds only through ``funds.public``. The package imports it, so that any
use of the area registers its part of the accounts area's ports (U1 outstanding fees).
"""

from accountgraph.funds import public as public
