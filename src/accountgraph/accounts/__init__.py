"""H, U, P: accounts, links, bill-tos, sites, API tokens and who sees what."""
