"""The audit log: one append-only row per mutation (who, what, with which input, how it
ended, from where), and ``Query.auditLog`` over it (P1-P4)."""
