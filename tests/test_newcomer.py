"""A newcomer's first hour (issue 19): mistakes explain themselves in the client's words,
every command's --help says what it does and reads, the README's links work in a plain
clone, and docs/rules.md names every rule."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from accountgraph.config import Settings
from accountgraph.domain import ErrorCode
from tests.helpers import Api

ROOT = Path(__file__).resolve().parents[1]
CHARGE = "mutation($i: RecordChargeInput!) { recordCharge(input: $i) { userErrors { code } } }"
PYTHON_WORDS = re.compile(r"\b(None|True|False|str|int|dict|NoneType|Traceback)\b|\{'")


# -- messages in the client's words ------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "says"),
    [
        (
            'mutation($a: Decimal!) { recordCharge(input: {accountId: "x", amount: $a,'
            ' description: "d"}) { userErrors { code } } }',
            {"a": None},
            "Variable '$a' of type 'Decimal!' must not be null.",
        ),
        (
            CHARGE,
            {"i": {"accountId": "x", "amount": None, "description": "d"}},
            "Variable '$i' has invalid value at .amount: "
            "A value of type 'Decimal!' must not be null.",
        ),
        (
            CHARGE,
            {"i": "text"},
            "Variable '$i' has invalid value: Expected value of type 'RecordChargeInput' "
            'to be an object, found: "text".',
        ),
        (
            CHARGE,
            {"i": {"accountId": "x", "amount": "1", "description": {"a": True}}},
            "Variable '$i' has invalid value at .description: "
            'String cannot represent a non string value: {"a": true}',
        ),
        (
            CHARGE,
            {},
            "Variable '$i' has invalid value: "
            "Expected a value of non-null type 'RecordChargeInput!' to be provided.",
        ),
    ],
    ids=["null variable", "null field", "not an object", "object for a string", "missing"],
)
async def test_a_variable_that_does_not_fit_says_so_in_json_words(
    api: Api, query: str, variables: dict[str, Any], says: str
) -> None:
    body = await api.raw(query, variables)
    [error] = body["errors"]
    assert error["message"] == says
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert not PYTHON_WORDS.search(error["message"]), error["message"]


async def test_an_input_field_that_does_not_exist_is_shown_as_json(api: Api) -> None:
    body = await api.raw(
        CHARGE, {"i": {"accountId": "x", "amount": "1", "description": "d", "extra": None}}
    )
    [error] = body["errors"]
    assert error["message"].endswith(
        'found: {"accountId": "x", "amount": "1", "description": "d", "extra": null}.'
    )
    assert not PYTHON_WORDS.search(error["message"]), error["message"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"query": "{ viewer { kind } }"', b"\xff\xfe", b"[1, 2]", b'"text"'],
    ids=["syntax", "cut off", "not UTF-8", "a list of numbers", "a string"],
)
async def test_a_body_that_is_not_a_json_object_gets_a_json_error(api: Api, body: bytes) -> None:
    response = await api.client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert error["message"]


# -- --help ------------------------------------------------------------------------------

COMMANDS = [
    ["serve"],
    ["worker"],
    ["migrate"],
    ["export-schema"],
    ["demo"],
    ["verify-ledger"],
    ["token"],
    ["token", "create"],
    ["token", "revoke"],
]


def settings_names() -> set[str]:
    return {field.alias or name for name, field in Settings.model_fields.items()}


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_each_command_helps_with_a_description_defaults_and_environment(
    command: list[str],
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "accountgraph.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    usage, description, *_ = done.stdout.split("\n\n")
    assert usage.startswith(f"usage: accountgraph {' '.join(command)}")
    assert len(description.split()) >= 6, description  # a sentence, not a word
    environment = done.stdout.split("environment", 1)[1]
    named = set(re.findall(r"^  ([A-Z][A-Z_]+) ", environment, flags=re.M))
    if command == ["export-schema"]:
        assert environment.startswith(": reads none")
    else:
        assert {"DATABASE_URL", "ACCOUNTGRAPH_STATE_DIR"} <= named
        assert named <= settings_names(), named - settings_names()  # real settings only
    options = [line for line in done.stdout.splitlines() if line.startswith("  --")]
    for option in ("--port", "--host", "--name"):
        if any(line.startswith(f"  {option} ") for line in options):
            assert "(default: " in done.stdout.split(f"  {option} ", 1)[1].split("\n  -")[0]


# -- the README in a plain clone ---------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:md|py|graphql|json|ts|yaml|toml))`")


def test_the_readme_links_resolve_to_files_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = [target.split("#")[0] for target in LINK.findall(readme)]
    local = [target for target in targets if target and "://" not in target]
    assert "docs/rules.md" in local
    for target in local + CODE_PATH.findall(readme):
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT), f"{target} points outside the repository"
        assert path.exists(), f"README names {target}, which a clone does not have"
    assert "../" not in readme


def test_the_rules_page_names_every_rule_and_only_real_codes() -> None:
    rules = (ROOT / "docs" / "rules.md").read_text()
    ids = re.findall(r"^\| ([A-Z]\d+) \|", rules, flags=re.M)
    expected = [
        f"{area}{number}"
        for area, count in {
            "H": 5, "F": 10, "U": 6, "B": 5, "T": 3, "W": 3,
            "I": 3, "V": 3, "S": 11, "A": 5, "C": 6, "P": 4,
        }.items()
        for number in range(1, count + 1)
    ]  # fmt: skip
    assert ids == expected
    known = {code.value for code in ErrorCode} | {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "INVALID_AMOUNT",
    }
    quoted = set(re.findall(r"`([A-Z][A-Z_]{3,})`", rules))
    words = {"TRUSTEESHIP", "FINANCIAL", "INVITED", "ACTIVE", "DISSOCIATED", "DECLINED"}
    words |= {"SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES", "AGGREGATED"}
    words |= {"PER_MEMBER", "TOP_UP", "PENDING", "CURRENT", "OVERDUE", "LOW_QUOTA"}
    words |= {"BUDGET_ACTUAL", "BUDGET_FORECASTED", "NO_TOKEN", "INVALID_TOKEN", "EMAIL"}
    assert quoted - words <= known, quoted - words - known
