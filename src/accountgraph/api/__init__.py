"""The kit every area's GraphQL uses: ids, errors, scalars, connections, auth checks."""
