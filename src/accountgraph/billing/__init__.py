"""B1-B5, I1-I3, V1-V3, U4-U6: billing hierarchy, invoices, invoice information, vouchers,
coupons, discounts and payment methods.

No area uses billing; the package imports ``billing.public``, so that any use of billing
registers its part of the funds area's ports (V2 charge instruments, B5 payer).
"""

from accountgraph.billing import public as public
