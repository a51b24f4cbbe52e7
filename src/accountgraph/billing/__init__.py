"""B1-B5, I1-I3, V1-V3, U4-U6: billing hierarchy, invoices, invoice information, vouchers,
coupons, discounts and payment methods."""
