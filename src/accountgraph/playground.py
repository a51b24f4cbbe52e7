"""GraphiQL on ``GET /graphql``, from assets the app serves itself.

Strawberry's own page loads React and GraphiQL from a public CDN and stays on
"Loading..." without internet. This page loads the copies vendored in
``static/graphiql/`` (versions and licences in the README there) from ``/static``, opens
with the enterprise tree query (``examples/enterprise-tree.graphql``) and the Headers tab
for the bearer token, and sends those headers on subscriptions too (the
``connection_init`` payload, as API.md asks).
A link ending in ``#token=<token>`` fills the header in (the fragment never reaches the
server) and is then removed from the address bar; ``serve --demo`` prints such a link.
Opened by such a link, the page keeps its headers in the tab's ``sessionStorage`` (not
GraphiQL's own storage, which is off), so that a reload keeps the token; closing the tab
forgets it.
"""

from __future__ import annotations

import json
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
ASSETS = "static/graphiql"  # relative to /graphql, so a path prefix in front still works

# The editor's document is ``examples/enterprise-tree.graphql``. A wheel (the Docker image)
# has no ``examples/``, so the package ships a copy, which tests/test_playground.py holds
# equal to it; read once, so that the page and its CSP hash (security.py) agree.
DEFAULT_QUERY_FILE = Path(__file__).parent / "examples" / "enterprise-tree.graphql"
DEFAULT_QUERY = DEFAULT_QUERY_FILE.read_text(encoding="utf-8")

DEFAULT_HEADERS = '{\n  "Authorization": "Bearer <your token>"\n}'

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>accountgraph GraphiQL</title>
  <style>
    body { height: 100%; margin: 0; width: 100%; overflow: hidden; }
    #graphiql { height: 100vh; }
  </style>
  <link rel="stylesheet" href="__ASSETS__/graphiql.min.css">
  <script src="__ASSETS__/react.production.min.js"></script>
  <script src="__ASSETS__/react-dom.production.min.js"></script>
  <script src="__ASSETS__/graphiql.min.js"></script>
</head>
<body>
  <div id="graphiql">Loading...</div>
  <script>
    const defaultQuery = __DEFAULT_QUERY__;
    const defaultHeaders = __DEFAULT_HEADERS__;
    const url = window.location.href.split(/[?#]/)[0];
    const socketUrl = url.replace(/^http/, "ws");
    // #token=<token>: fill the header in, then drop the token from the address bar. The
    // link opts in to keeping the headers in this tab's sessionStorage, so that a reload
    // (F5) keeps them; without such a link nothing is stored.
    const stored = "accountgraph:graphiql:headers";
    const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
    let headers = sessionStorage.getItem(stored) || undefined;
    if (token) {
      headers = JSON.stringify({Authorization: "Bearer " + token}, null, 2);
      sessionStorage.setItem(stored, headers);
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    const keep = (edited) => {
      if (sessionStorage.getItem(stored) !== null) sessionStorage.setItem(stored, edited);
    };
    // The headers of the editor go on every HTTP request and, for subscriptions, into
    // the graphql-transport-ws connection_init payload.
    const fetcher = GraphiQL.createFetcher({url: url, subscriptionUrl: socketUrl});
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, {
        fetcher: fetcher,
        defaultQuery: defaultQuery,
        defaultHeaders: defaultHeaders,
        headers: headers,
        onEditHeaders: keep,
        isHeadersEditorEnabled: true,
        defaultEditorToolsVisibility: "headers",
        shouldPersistHeaders: false,
        inputValueDeprecation: true,
      }),
    );
  </script>
</body>
</html>
"""


def graphiql_html() -> str:
    """The page, with the default document and headers as JavaScript literals."""
    return (
        PAGE.replace("__ASSETS__", ASSETS)
        .replace("__DEFAULT_QUERY__", _js(DEFAULT_QUERY))
        .replace("__DEFAULT_HEADERS__", _js(DEFAULT_HEADERS))
    )


def _js(value: str) -> str:
    """A JSON string literal that cannot end the <script> element it sits in."""
    return json.dumps(value).replace("</", "<\\/")


__all__ = ["ASSETS", "DEFAULT_QUERY", "DEFAULT_QUERY_FILE", "STATIC_DIR", "graphiql_html"]
