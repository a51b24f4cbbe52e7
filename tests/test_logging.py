"""Issue 15, structured logs: JSON lines (``ACCOUNTGRAPH_LOG_FORMAT=json``) with the
request's id, principal, operation, duration, outcome and trace id; the worker's lines
with the job id and the outbox row id; text on a terminal."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from accountgraph import logs
from accountgraph.api import ids
from accountgraph.config import Settings
from tests.helpers import OPERATOR_TOKEN, Api, json_log_lines

ERRORS = "userErrors { code field message }"
RENAME = f"""mutation Rename($input: UpdateAccountInput!) {{
  updateAccount(input: $input) {{ account {{ id }} {ERRORS} }} }}"""
PAY = f"""mutation Pay($input: RecordPaymentInput!) {{
  recordPayment(input: $input) {{ account {{ id }} {ERRORS} }} }}"""
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The process's log lines (the app and the worker run in it), as JSON, parsed."""
    with json_log_lines() as stream:

        def parsed() -> list[dict[str, Any]]:
            return [json.loads(line) for line in stream.getvalue().splitlines()]  # valid JSON

        yield parsed


def request_lines(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in found if line["logger"] == "accountgraph.request"]


async def post(api: Api, query: str, variables: dict[str, Any], token: str, **headers: str) -> Any:
    return await api.client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}", **headers},
    )


async def test_a_request_logs_one_json_line_with_its_fields(
    api: Api, lines: Callable[[], list[dict[str, Any]]]
) -> None:
    account = await api.account("Logged")
    token = await api.token(account)
    response = await post(
        api,
        RENAME,
        {"input": {"accountId": account, "displayName": "x"}},
        token,
        **{"X-Request-Id": "log-test-1", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 200
    [line] = [found for found in request_lines(lines()) if found["request_id"] == "log-test-1"]
    assert line["level"] == "INFO" and line["message"] == "POST /graphql 200"
    assert line["principal_kind"] == "ACCOUNT_USER"
    assert line["principal_account"] == ids.decode_as(account, "Account")
    assert (line["operation"], line["outcome"], line["status"]) == ("Rename", "OK", 200)
    assert line["trace_id"] == TRACE_ID
    assert line["client_address"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["time"].endswith("+00:00")


async def test_refused_and_failed_requests_log_their_outcome(
    api: Api, lines: Callable[[], list[dict[str, Any]]]
) -> None:
    account = await api.account("Refused")
    token = await api.token(account)
    other = await api.account("Other")
    await post(
        api,
        RENAME,
        {"input": {"accountId": other, "displayName": "x"}},
        token,
        **{"X-Request-Id": "refused-1"},
    )
    await post(api, "query Broken { nothing }", {}, OPERATOR_TOKEN, **{"X-Request-Id": "bad-1"})
    found = {line["request_id"]: line for line in request_lines(lines())}
    assert found["refused-1"]["outcome"] == "REFUSED"
    assert found["bad-1"]["outcome"] == "ERROR" and found["bad-1"]["operation"] == "Broken"
    assert found["bad-1"]["principal_kind"] == "OPERATOR"
    assert "principal_account" not in found["bad-1"]


async def test_worker_lines_carry_the_job_and_outbox_row(
    api: Api, run_jobs: Any, lines: Callable[[], list[dict[str, Any]]], settings: Settings
) -> None:
    account = await api.account("Paid")
    await api.ok("recordPayment", PAY, {"accountId": account, "amount": "10.00"})
    await run_jobs()
    done = [line for line in lines() if line["message"] == "job done"]
    assert done, "the quota.changed row ran as a job"
    for line in done:
        assert line["logger"] == "accountgraph.job" and line["outcome"] == "OK"
        assert line["job_id"] == f"{settings.queue_name}:outbox:{line['outbox_row_id']}"
        assert isinstance(line["outbox_row_id"], int) and line["duration_ms"] >= 0
        assert "request_id" not in line


def test_the_default_format_is_text_on_a_terminal_and_json_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve_format(None, Terminal()) == "text"
    assert logs.resolve_format(None, io.StringIO()) == "json"
    assert logs.resolve_format("json", Terminal()) == "json"
    assert logs.resolve_format("text", io.StringIO()) == "text"
    assert Settings(ACCOUNTGRAPH_LOG_FORMAT="json").log_format == "json"
    assert Settings().log_format is None or Settings().log_format in ("json", "text")
    bad: Any = "xml"
    with pytest.raises(ValidationError):
        Settings(ACCOUNTGRAPH_LOG_FORMAT=bad)


def test_text_lines_show_the_scope_as_key_value_pairs() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("accountgraph.test_text")
    logger.addHandler(logs.handler("text", stream))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    scope, token = logs.open_scope(request_id="abc", principal_kind="OPERATOR")
    try:
        logger.info("hello %s", "world", extra={"duration_ms": 1.5})
    finally:
        logs.close_scope(token)
    logger.info("outside")
    first, second = stream.getvalue().splitlines()
    assert first.endswith(
        "accountgraph.test_text: hello world [request_id=abc "
        "principal_kind=OPERATOR duration_ms=1.5]"
    )
    assert second.endswith("accountgraph.test_text: outside")
    assert scope.fields() == {"request_id": "abc", "principal_kind": "OPERATOR"}


def test_uvicorn_processes_log_json_lines_and_keep_httpx_quiet() -> None:
    """What ``serve`` hands uvicorn (also for its worker processes): our JSON lines, and
    no httpx line with a URL at INFO."""
    script = (
        "import logging, logging.config\n"
        "from accountgraph import logs\n"
        "logging.config.dictConfig(logs.uvicorn_log_config('json'))\n"
        "logging.getLogger('uvicorn.error').info('Started server process')\n"
        "logging.getLogger('httpx').info('HTTP Request: POST https://h/x?key=secret')\n"
        "logging.getLogger('accountgraph.request').info('GET /healthz 200')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    found = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["message"] for line in found] == ["Started server process", "GET /healthz 200"]
    assert found[0]["logger"] == "uvicorn.error" and found[0]["level"] == "INFO"


def test_configure_puts_one_json_handler_on_the_root_logger() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET}
    try:
        logs.configure("WARNING", "json")
        [handler] = root.handlers
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert root.level == logging.WARNING
        assert logging.getLogger("httpx").level == logging.WARNING
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
        for name, found in quiet.items():
            logging.getLogger(name).setLevel(found)
