"""H, U, P: accounts, links, bill-tos, sites, API tokens and who sees what.

The bottom of the areas: it uses no other area, and the others use it only through
``accounts.public``.
"""
