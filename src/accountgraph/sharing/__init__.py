"""S1-S11: resources, sharing settings, user groups and effective sharing.

No area uses sharing; the package imports ``sharing.public``, so that any use of sharing
registers its part of the accounts area's ports (U5/S9: dissociation ends group
membership).
"""

from accountgraph.sharing import public as public
