"""schema.graphql is generated from the code, and holds API.md's surface for what exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from accountgraph.schema import sdl

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_CHECK = ROOT.parent / "shared" / "tools" / "contract_check.py"

# The API.md types this codebase implements so far; each later area adds its own.
IMPLEMENTED = [
    "Node",
    "PageInfo",
    "AccountStatus",
    "AccountRole",
    "LinkType",
    "LinkStatus",
    "LinkPermission",
    "PrincipalKind",
    "ErrorCode",
    "UserError",
    "Viewer",
    "PlatformSettings",
    "AccountConnection",
    "AccountEdge",
    "Link",
    "LinkEvent",
    "BillTo",
    "Site",
    "CreateAccountInput",
    "CreateApiTokenInput",
    "UpdateSettingsInput",
    "UpdateAccountInput",
    "InviteMemberInput",
    "RespondToInvitationInput",
    "DissociateMemberInput",
    "AddBillToInput",
    "UpdateBillToInput",
    "RemoveBillToInput",
    "AddSiteInput",
    "UpdateSiteInput",
    "AccountPayload",
    "CreateApiTokenPayload",
    "SettingsPayload",
    "LinkPayload",
    "BillToPayload",
    "SitePayload",
    # V1-V3, B5: vouchers, coupons, payment methods, payments
    "Voucher",
    "Coupon",
    "PaymentMethod",
    "Payment",
    "PaymentConnection",
    "PaymentEdge",
    "GrantVoucherPoolInput",
    "CreateVoucherInput",
    "IssueCouponInput",
    "AddPaymentMethodInput",
    "AddManagedPaymentMethodInput",
    "VoucherPayload",
    "PaymentMethodPayload",
    # C1-C6: the cost center
    "CostDimension",
    "BudgetPeriod",
    "BudgetBasis",
    "RecommendationKind",
    "NotificationKind",
    "CostTag",
    "CostGroup",
    "CostReport",
    "BudgetThreshold",
    "Budget",
    "CostRecommendation",
    "CostTagInput",
    "BudgetThresholdInput",
    "SetBudgetInput",
    "RemoveBudgetInput",
    "BudgetPayload",
    # Issue 15: the audit log
    "AuditOutcome",
    "AuditEntry",
    "AuditEntryConnection",
    "AuditEntryEdge",
    # T1-T3, W1-W3: taxes, general ledger, stored value, automatic payments
    "TaxGroup",
    "LedgerLine",
    "StoredValueCard",
    "AutoTopUp",
    "CreateTaxGroupInput",
    "SetAccountTaxGroupInput",
    "IssueStoredValueCardInput",
    "SetAutoPayInput",
    "SetAutoTopUpInput",
    "TaxGroupPayload",
]
IMPLEMENTED_FIELDS = {
    "Query": [
        "node",
        "viewer",
        "account",
        "accounts",
        "settings",
        "auditLog",
        "taxGroups",
        "generalLedger",
    ],
    "Mutation": [
        "createAccount",
        "createApiToken",
        "updateSettings",
        "updateAccount",
        "inviteMember",
        "respondToInvitation",
        "dissociateMember",
        "addBillTo",
        "updateBillTo",
        "removeBillTo",
        "addSite",
        "updateSite",
        "grantVoucherPool",
        "createVoucher",
        "issueCoupon",
        "addPaymentMethod",
        "addManagedPaymentMethod",
        "setBudget",
        "removeBudget",
        "createTaxGroup",
        "setAccountTaxGroup",
        "issueStoredValueCard",
        "setAutoPay",
        "setAutoTopUp",
    ],
    "Account": [
        "id",
        "name",
        "displayName",
        "branch",
        "terms",
        "salesperson",
        "status",
        "role",
        "link",
        "members",
        "invitations",
        "billTos",
        "primaryBillTo",
        "sites",
        "costCenterEnabled",
        "payments",
        "coupons",
        "vouchers",
        "voucherPool",
        "paymentMethods",
        "costs",
        "budgets",
        "costRecommendations",
        "taxGroup",
        "storedValueCards",
        "autoTopUp",
    ],
    "FinancialState": ["couponCount", "voucherCount", "storedValue", "storedValueCardCount"],
    "InvoiceLine": ["taxRate", "tax"],
    "Invoice": ["taxTotal", "paidAt", "payment"],
    "PaymentMethod": ["autoPay"],
    "RecordPaymentInput": ["paymentMethodId"],
    "RecordChargeInput": ["product", "tags"],
    "Charge": ["product", "tags", "branch"],
    "Notification": ["budget", "spent", "forecast"],
}


def test_schema_graphql_is_generated_from_the_code() -> None:
    """Run `accountgraph export-schema --output schema.graphql` when this fails."""
    assert (ROOT / "schema.graphql").read_text() == sdl()


@pytest.mark.skipif(not CONTRACT_CHECK.exists(), reason="../shared is not beside this clone")
def test_contract_reports_no_difference_for_what_is_implemented() -> None:
    result = subprocess.run(
        [sys.executable, str(CONTRACT_CHECK), str(ROOT / "schema.graphql")],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line.removeprefix("contract: ") for line in result.stdout.splitlines()]
    wrong = [
        line
        for line in lines
        if any(line.split(" ")[-1] == name or f" {name} " in f" {line} " for name in IMPLEMENTED)
        or any(
            line.startswith(f"{owner}.{field} ") or line.startswith(f"{owner}.{field}(")
            for owner, fields in IMPLEMENTED_FIELDS.items()
            for field in fields
        )
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("12.5", "12.50"),
        ("0", "0.00"),
        ("100", "100.00"),
        ("8.875", "8.875"),
        ("8.8750", "8.875"),
        ("0.0001", "0.0001"),
        ("1E+2", "100.00"),
    ],
)
def test_a_rate_keeps_its_places_and_an_amount_shows_two(stored: str, shown: str) -> None:
    """API.md: every amount exactly 2 places; T1: a tax rate keeps up to 4 (8.875)."""
    from decimal import Decimal

    from accountgraph.api.scalars import Exact, _serialize

    assert _serialize(Exact(stored)) == shown
    assert _serialize(Decimal(stored)) == str(Decimal(stored).quantize(Decimal("0.01")))
