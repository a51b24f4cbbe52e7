"""F1-F10, U2-U4 (money): journal, balances, transfers, credit, charges, payments."""
