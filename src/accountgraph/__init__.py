"""accountgraph: a GraphQL API over an enterprise's account graph and its money."""
