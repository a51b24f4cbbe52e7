"""GraphiQL in a real browser: headless Chromium (Debian's package) driven over the
DevTools protocol with ``websockets``, against the app on a real uvicorn.

Chromium is installed with apt-get when missing and this runs as root (``.ci/run`` does it
first); elsewhere the test is skipped, saying why, unless ACCOUNTGRAPH_REQUIRE_BROWSER is
set (CI), where a missing browser fails. The screenshot lands in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.app import create_app
from accountgraph.cli import demo_banner
from accountgraph.config import Settings
from accountgraph.demo import load_demo
from tests.conftest import serving

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]
STEP_TIMEOUT_S = 20.0  # one DevTools call, or one wait for the page
INSTALL_TIMEOUT_S = 900


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


def chromium_or_skip() -> str:
    """The browser: found, or installed from Debian's packages (root), or skip / fail."""
    if found := find_chromium():
        return found
    required = bool(os.environ.get("ACCOUNTGRAPH_REQUIRE_BROWSER"))
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        reason = (
            "no chromium on PATH, and installing Debian's chromium needs root and "
            "apt-get (run .ci/run, or: apt-get install chromium)"
        )
        if required:
            pytest.fail(reason)
        pytest.skip(reason)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    found = find_chromium()
    if found is None:
        pytest.fail("apt-get installed chromium but it is not on PATH")
    return found


class DevTools:
    """Just enough of the Chrome DevTools protocol: calls, and the events kept in order."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            future = self.waiting.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
            elif "method" in message:
                self.events.append(message)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[number] = future
        await self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        message = await asyncio.wait_for(future, STEP_TIMEOUT_S)
        if "error" in message:
            raise AssertionError(f"{method}: {message['error']}")
        result: dict[str, Any] = message["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str) -> Any:
        """The expression's value once truthy (polled), or fail after STEP_TIMEOUT_S."""
        deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT_S
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium_page() -> AsyncIterator[DevTools]:
    """A fresh headless Chromium (new profile) and a DevTools session on its first tab."""
    executable = chromium_or_skip()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT_S
            while not port_file.exists() or not port_file.read_text().strip():
                if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    stderr = await process.stderr.read() if process.stderr else b""
                    raise AssertionError(f"chromium did not start: {stderr[-2000:]!r}")
                await asyncio.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            async with httpx.AsyncClient() as client:
                targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
            page = next(target for target in targets if target["type"] == "page")
            async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
                devtools = DevTools(ws)
                for domain in ("Page", "Runtime", "Network"):
                    await devtools.call(f"{domain}.enable")
                try:
                    yield devtools
                finally:
                    devtools.reader.cancel()
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


# The editors are CodeMirror 5 instances; GraphiQL marks the hidden one of the tool tabs.
EDITOR = "document.querySelector('{selector} .CodeMirror')"
HEADERS_EDITOR = EDITOR.format(selector=".graphiql-editor-tool .graphiql-editor:not(.hidden)")
QUERY_EDITOR = EDITOR.format(selector=".graphiql-query-editor")
RESULT = EDITOR.format(selector=".result-window")
HEADERS_SHOWN = f"{HEADERS_EDITOR} && {HEADERS_EDITOR}.CodeMirror.getValue()"


async def test_graphiql_runs_the_default_query_with_a_token_offline(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, clean: None
) -> None:
    tokens = await load_demo(engine)
    async with serving(create_app(settings, engine, redis)) as url, chromium_page() as page:
        await page.call("Page.navigate", url=f"{url}/graphql")
        await page.wait_for(
            f"!!({HEADERS_EDITOR} && {QUERY_EDITOR} && "
            "document.querySelector('.graphiql-execute-button'))",
            "GraphiQL to render with the Headers tab open",
        )
        assert "query EnterpriseTree" in await page.evaluate(
            f"{QUERY_EDITOR}.CodeMirror.getValue()"
        )
        header = json.dumps({"Authorization": f"Bearer {tokens['master']}"})
        await page.evaluate(f"{HEADERS_EDITOR}.CodeMirror.setValue({json.dumps(header)})")
        await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
        text = await page.wait_for(
            f"({RESULT}.CodeMirror.getValue().includes('\"data\"')"
            f" || {RESULT}.CodeMirror.getValue().includes('errors'))"
            f" && {RESULT}.CodeMirror.getValue()",
            "the result of the query",
        )
        await page.screenshot(ARTIFACTS / "graphiql.png")
        result = json.loads(text)
        requests = [
            event["params"]["request"]["url"]
            for event in page.events
            if event["method"] == "Network.requestWillBeSent"
        ]
        exceptions = [
            event["params"] for event in page.events if event["method"] == "Runtime.exceptionThrown"
        ]

    assert "errors" not in result, result
    account = result["data"]["viewer"]["account"]
    assert account["name"] == "Account-M"
    assert account["members"]["totalCount"] == 5
    assert {edge["node"]["name"] for edge in account["members"]["edges"]} == {
        f"Account-sub{n}" for n in range(1, 6)
    }
    own = urlsplit(url).netloc
    assert [r for r in requests if urlsplit(r).netloc not in (own, "")] == [], (
        "GraphiQL must load nothing from outside the app (no CDN)"
    )
    assert any(r.endswith("/static/graphiql/graphiql.min.js") for r in requests)
    assert exceptions == []


async def test_the_link_serve_demo_prints_fills_the_header_in(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, clean: None
) -> None:
    """/graphql#token=<master token>; the token then leaves the address bar."""
    tokens = await load_demo(engine)
    async with serving(create_app(settings, engine, redis)) as url, chromium_page() as page:
        address = urlsplit(url)
        banner = demo_banner(tokens, address.hostname, address.port)
        link = next(word for word in banner.split() if word.startswith(f"{url}/graphql#"))
        await page.call("Page.navigate", url=link)
        headers = await page.wait_for(
            f"{HEADERS_EDITOR} && {HEADERS_EDITOR}.CodeMirror.getValue()", "the headers editor"
        )
        location = await page.evaluate("window.location.href")
    assert json.loads(headers) == {"Authorization": f"Bearer {tokens['master']}"}
    assert location == f"{url}/graphql"


async def test_graphiql_keeps_the_linked_token_across_a_reload(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, clean: None
) -> None:
    """F5 after the #token= link: the header is still there, and the query still runs as
    the master (the link opted in to the tab's storage); an edit is kept too."""
    tokens = await load_demo(engine)
    async with serving(create_app(settings, engine, redis)) as url, chromium_page() as page:
        await page.call("Page.navigate", url=f"{url}/graphql#token={tokens['master']}")
        await page.wait_for(
            f"{HEADERS_EDITOR} && {HEADERS_EDITOR}.CodeMirror.getValue()", "headers"
        )
        await page.call("Page.reload")
        await page.wait_for(
            f"{HEADERS_EDITOR} && {HEADERS_EDITOR}.CodeMirror.getValue().includes('agt_')",
            "the headers after a reload",
        )
        reloaded = await page.evaluate(f"{HEADERS_EDITOR}.CodeMirror.getValue()")
        await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
        text = await page.wait_for(
            f"{RESULT}.CodeMirror.getValue().includes('\"viewer\"') && "
            f"{RESULT}.CodeMirror.getValue()",
            "the result of the query",
        )
        edited = json.dumps({"Authorization": f"Bearer {tokens['member']}"})
        await page.evaluate(f"{HEADERS_EDITOR}.CodeMirror.setValue({json.dumps(edited)})")
        await page.wait_for(  # GraphiQL debounces its onEdit callbacks: wait for the store
            "(sessionStorage.getItem('accountgraph:graphiql:headers') || '')"
            f".includes({json.dumps(tokens['member'])})",
            "the edited headers in the tab's storage",
        )
        await page.call("Page.reload")
        await page.wait_for(
            f"{HEADERS_EDITOR} && {HEADERS_EDITOR}.CodeMirror.getValue().includes('agt_')",
            "the edited headers after a reload",
        )
        again = await page.evaluate(f"{HEADERS_EDITOR}.CodeMirror.getValue()")
    assert json.loads(reloaded) == {"Authorization": f"Bearer {tokens['master']}"}
    assert json.loads(text)["data"]["viewer"]["account"]["name"] == "Account-M"
    assert json.loads(again) == {"Authorization": f"Bearer {tokens['member']}"}


async def test_graphiql_stores_nothing_without_the_link(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, clean: None
) -> None:
    async with serving(create_app(settings, engine, redis)) as url, chromium_page() as page:
        await page.call("Page.navigate", url=f"{url}/graphql")
        await page.wait_for(
            f"{HEADERS_EDITOR} && {HEADERS_EDITOR}.CodeMirror.getValue()", "headers"
        )
        await page.evaluate(
            f'{HEADERS_EDITOR}.CodeMirror.setValue(\'{{"Authorization": "Bearer agt_typed"}}\')'
        )
        await asyncio.sleep(0.5)
        await page.call("Page.reload")
        await page.wait_for(
            f"{HEADERS_EDITOR} && {HEADERS_EDITOR}.CodeMirror.getValue()", "headers"
        )
        headers = await page.evaluate(f"{HEADERS_EDITOR}.CodeMirror.getValue()")
        stored = await page.evaluate("JSON.stringify(Object.keys(sessionStorage))")
    assert "agt_typed" not in headers
    assert "accountgraph:graphiql:headers" not in json.loads(stored)
