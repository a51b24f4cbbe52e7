"""The accounts area's public surface: the only module of it that other areas import.

The accounts area is at the bottom of the areas and uses none of them; the areas above it
(funds, sharing, billing, alerts) use the account graph only through what is here:

- access checks inside a service's transaction (P2-P4: NOT_FOUND for what the principal
  may not see, PERMISSION_NOT_GRANTED for what it sees but may not do), the reads of
  the link graph (H1, U3, U4) and the one account-lock helper;
- the visibility predicates (P2-P4, U5) and narrow SQL pieces of the graph, to build into
  the callers' own queries;
- the bill-to functions billing's invoice information (I2, I3) writes through;
- the ports the areas above fill in (U1 outstanding fees, U5 dissociation).
"""

from __future__ import annotations

from accountgraph.accounts.access import (
    account_access,
    active_link_as_member,
    active_links_to,
    finance_access,
    has_trusteeship_members,
    is_member,
    member_link,
    own_account,
    own_or_operator,
    trusteeship_link,
)
from accountgraph.accounts.bill_tos import (
    ReferencedReadOnly,
    bill_tos_of,
    checked_bill_to_fields,
    mirror_master_invoice_info,
    set_references_master,
    write_primary_bill_to,
)
from accountgraph.accounts.graph import (
    account_branches,
    account_ids,
    account_names,
    active_associations,
    active_memberships,
    cost_center_on,
    has_active_master,
    site_bill_tos,
    site_tax_groups,
    trusteeship_periods,
    under_trusteeship,
)
from accountgraph.accounts.locks import lock_accounts
from accountgraph.accounts.ports import (
    DissociationListener,
    OutstandingFees,
    TaxGroupExists,
    on_dissociate,
    register_outstanding_fees,
    register_tax_groups,
)
from accountgraph.accounts.sites import branch_of, site_of
from accountgraph.accounts.visibility import (
    sees_association_costs,
    sees_details,
    sees_finance,
    sees_name,
)

__all__ = [
    "DissociationListener",
    "OutstandingFees",
    "ReferencedReadOnly",
    "TaxGroupExists",
    "account_access",
    "account_branches",
    "account_ids",
    "account_names",
    "active_associations",
    "active_link_as_member",
    "active_links_to",
    "active_memberships",
    "bill_tos_of",
    "branch_of",
    "checked_bill_to_fields",
    "cost_center_on",
    "finance_access",
    "has_active_master",
    "has_trusteeship_members",
    "is_member",
    "lock_accounts",
    "member_link",
    "mirror_master_invoice_info",
    "on_dissociate",
    "own_account",
    "own_or_operator",
    "register_outstanding_fees",
    "register_tax_groups",
    "sees_association_costs",
    "sees_details",
    "sees_finance",
    "sees_name",
    "set_references_master",
    "site_bill_tos",
    "site_of",
    "site_tax_groups",
    "trusteeship_link",
    "trusteeship_periods",
    "under_trusteeship",
    "write_primary_bill_to",
]
