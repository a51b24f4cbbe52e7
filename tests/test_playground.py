"""GraphiQL's default document is ``examples/enterprise-tree.graphql``, shipped inside the
package, and the page's Content-Security-Policy allows exactly the inline script the
page serves (which carries that document)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from accountgraph.playground import DEFAULT_QUERY, DEFAULT_QUERY_FILE, graphiql_html
from tests.helpers import Api

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "enterprise-tree.graphql"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", flags=re.DOTALL)
DEFAULT_QUERY_LITERAL = re.compile(r"const defaultQuery = (\".*?[^\\]\");")


def csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def test_the_packaged_copy_is_the_example() -> None:
    assert DEFAULT_QUERY_FILE.read_bytes() == EXAMPLE.read_bytes()
    assert EXAMPLE.read_text(encoding="utf-8") == DEFAULT_QUERY


def test_the_page_opens_with_the_example_text() -> None:
    literal = DEFAULT_QUERY_LITERAL.search(graphiql_html())
    assert literal is not None
    assert json.loads(literal.group(1)) == EXAMPLE.read_text(encoding="utf-8")


async def test_the_served_page_has_its_inline_script_allowed_by_hash(api: Api) -> None:
    page = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    scripts = INLINE_SCRIPT.findall(page.text)
    assert len(scripts) == 1
    assert "const defaultQuery = " + json.dumps(DEFAULT_QUERY).replace("</", "<\\/") in scripts[0]
    policy = page.headers["Content-Security-Policy"]
    assert f"script-src 'self' {csp_hash(scripts[0])};" in policy
