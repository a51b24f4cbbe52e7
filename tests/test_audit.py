"""Issue 15, the audit log: one row per mutation (accepted, refused, failed), secrets
never recorded, rows append-only with a retention purge, ``Query.auditLog`` seen per
P1-P4 (operators all; a master its own and its members'; a member and a stranger their
own), and request ids."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets
from arq.connections import ArqRedis
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.typing import Subprotocol

from accountgraph.audit import log as audit
from accountgraph.audit.mutations import is_audited
from accountgraph.config import Settings
from accountgraph.schema import schema
from tests.alerts.support import Receiver, drain, watched
from tests.conftest import serving
from tests.helpers import OPERATOR_TOKEN, Api, Enterprise, enterprise, json_log_lines

ERRORS = "userErrors { code field message }"
UPDATE_ACCOUNT = f"""mutation Rename($input: UpdateAccountInput!) {{
  updateAccount(input: $input) {{ account {{ id displayName }} {ERRORS} }} }}"""
CREATE_TOKEN = f"""mutation($input: CreateApiTokenInput!) {{
  createApiToken(input: $input) {{ token {ERRORS} }} }}"""
CREATE_ACCOUNT = f"""mutation NewAccount($input: CreateAccountInput!) {{
  createAccount(input: $input) {{ account {{ id }} {ERRORS} }} }}"""
SET_CHANNELS = f"""mutation($input: SetNotificationChannelsInput!) {{
  setNotificationChannels(input: $input) {{ account {{ id }} {ERRORS} }} }}"""
CHARGE = f"""mutation($input: RecordChargeInput!) {{
  recordCharge(input: $input) {{ charge {{ id }} {ERRORS} }} }}"""
AUDIT_LOG = """query($first: Int, $after: String, $accountId: ID, $since: DateTime,
    $until: DateTime, $field: String, $outcome: AuditOutcome) {
  auditLog(first: $first, after: $after, accountId: $accountId, since: $since,
           until: $until, field: $field, outcome: $outcome) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id at principalKind account { id } tokenName operationName field
      outcome errorCodes input objectIds requestId clientAddress } } } }"""
NODE = "query($id: ID!) { node(id: $id) { ... on AuditEntry { id field } } }"


async def rename(api: Api, account: str, token: str, name: str) -> dict[str, Any]:
    return await api.mutate(
        "updateAccount", UPDATE_ACCOUNT, {"accountId": account, "displayName": name}, token
    )


async def entries(api: Api, token: str = OPERATOR_TOKEN, **filters: Any) -> dict[str, Any]:
    found: dict[str, Any] = (await api.gql(AUDIT_LOG, filters, token))["auditLog"]
    return found


def nodes(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in found["edges"]]


async def rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT * FROM audit_log ORDER BY id"))).all())


async def all_audit_text(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT string_agg(a::text, '\n') FROM audit_log a"))
        return str(found.scalar_one() or "")


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    """A webhook receiver on a loopback port (``hook.url``)."""
    receiver = Receiver()
    async with serving(receiver.app()) as url:
        receiver.url = f"{url}/hook"
        yield receiver


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the process (gateway and worker run in it) as JSON, at DEBUG."""
    with json_log_lines(logging.DEBUG, quiet=True) as stream:
        yield stream


# ---------------------------------------------------------------- one hook covers every mutation


def test_every_mutation_field_is_audited() -> None:
    """The hook is on every Mutation field of the schema, also ones added later."""
    definition = schema.get_type_by_name("Mutation")
    assert definition is not None
    fields = definition.fields  # type: ignore[union-attr]
    assert len(fields) >= 30
    missing = [field.name for field in fields if not is_audited(field)]
    assert missing == []
    graphql_fields = schema._schema.mutation_type.fields  # type: ignore[union-attr]
    assert len(graphql_fields) == len(fields)


async def test_accepted_mutation_is_audited_with_its_objects(api: Api, engine: AsyncEngine) -> None:
    response = await api.client.post(
        "/graphql",
        json={"query": CREATE_ACCOUNT, "variables": {"input": {"name": "Audited"}}},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "X-Request-Id": "req-42.a:b"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42.a:b"
    account = response.json()["data"]["createAccount"]["account"]["id"]
    [row] = await rows(engine)
    assert (row.principal_kind, row.account_id, row.token_id, row.token_name) == (
        "OPERATOR",
        None,
        None,  # the env operator token: no token row, no fingerprint of it
        "env",
    )
    assert (row.field, row.operation_name, row.outcome, row.error_codes) == (
        "createAccount",
        "NewAccount",
        "OK",
        [],
    )
    # As the mutation saw it: GraphQL names, the schema's defaults filled in.
    assert row.input == {
        "input": {
            "name": "Audited",
            "displayName": None,
            "branch": None,
            "terms": None,
            "salesperson": None,
        }
    }
    assert row.object_ids == [account]
    assert (row.request_id, row.client_address) == ("req-42.a:b", "127.0.0.1")
    [entry] = nodes(await entries(api))
    assert entry["objectIds"] == [account] and entry["outcome"] == "OK"
    assert entry["principalKind"] == "OPERATOR" and entry["account"] is None


async def test_refused_mutation_is_audited_with_its_codes(api: Api, engine: AsyncEngine) -> None:
    """A rule's refusal: REFUSED with the payload's codes, no objects."""
    group = await enterprise(api, members=1)
    before = len(await rows(engine))
    payload = await api.mutate(
        "createApiToken",
        CREATE_TOKEN,
        {"accountId": group.members[0], "name": "x"},
        group.master_token,
    )
    assert [error["code"] for error in payload["userErrors"]] == ["PERMISSION_NOT_GRANTED"]
    found = await rows(engine)
    assert len(found) == before + 1
    row = found[-1]
    assert (row.field, row.outcome, row.error_codes, row.object_ids) == (
        "createApiToken",
        "REFUSED",
        ["PERMISSION_NOT_GRANTED"],
        [],
    )
    assert row.principal_kind == "ACCOUNT_USER" and row.token_name == "test"
    assert row.token_id is not None and len(row.token_id) == 16
    refused = nodes(await entries(api, outcome="REFUSED"))
    assert [entry["errorCodes"] for entry in refused] == [["PERMISSION_NOT_GRANTED"]]


async def test_a_refused_input_with_nul_characters_is_audited(
    api: Api, engine: AsyncEngine
) -> None:
    """PostgreSQL's JSONB cannot hold NUL: the row shows it as U+2400 instead of failing
    (which left the mutation unaudited)."""
    account = await api.account("Audited NUL")
    before = len(await rows(engine))
    payload = await api.mutate(
        "recordCharge",
        CHARGE,
        {"accountId": account, "amount": "1.00", "description": "a\x00b"},
    )
    assert [error["code"] for error in payload["userErrors"]] == ["INVALID_INPUT"]
    found = await rows(engine)
    assert len(found) == before + 1
    row = found[-1]
    assert (row.field, row.outcome, row.error_codes) == (
        "recordCharge",
        "REFUSED",
        ["INVALID_INPUT"],
    )
    assert row.input["input"]["description"] == "a\u2400b"


async def test_failed_mutation_is_audited_as_an_error(api: Api, engine: AsyncEngine) -> None:
    """P4: an account user calling an operator's mutation is refused FORBIDDEN (a top-level
    error): audited as ERROR, and nothing else was written."""
    account = await api.account("User")
    token = await api.token(account)
    before = len(await rows(engine))
    body = await api.raw(CREATE_ACCOUNT, {"input": {"name": "Nope"}}, token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    found = await rows(engine)
    assert len(found) == before + 1
    assert (found[-1].field, found[-1].outcome, found[-1].error_codes) == (
        "createAccount",
        "ERROR",
        ["FORBIDDEN"],
    )
    async with engine.connect() as conn:
        names = (await conn.execute(text("SELECT name FROM accounts ORDER BY id"))).scalars()
        assert list(names) == ["User"]


async def test_the_audit_costs_one_insert_per_mutation_and_nothing_per_query(
    api: Api, engine: AsyncEngine
) -> None:
    account = await api.account("Cheap")
    sent: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        await api.gql("query($id: ID!) { account(id: $id) { id name } }", {"id": account})
        assert not [statement for statement in sent if "audit_log" in statement]
        assert (await rename(api, account, OPERATOR_TOKEN, "x"))["userErrors"] == []
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    audit_statements = [statement for statement in sent if "audit_log" in statement]
    assert len(audit_statements) == 1 and audit_statements[0].startswith("INSERT INTO audit_log")


async def test_p1_a_request_without_a_token_is_not_audited(api: Api, engine: AsyncEngine) -> None:
    body = await api.raw(CREATE_ACCOUNT, {"input": {"name": "Anon"}}, token=None)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await rows(engine) == []


# ---------------------------------------------------------------- who sees what (P1-P4)


async def _everyone_acts(api: Api) -> tuple[Enterprise, str, str]:
    """The operator, the master, both members and a stranger each rename their account."""
    group = await enterprise(api, members=2)
    stranger = await api.account("Stranger")
    stranger_token = await api.token(stranger)
    for account, token in [
        (group.master, group.master_token),
        (group.members[0], group.member_tokens[0]),
        (group.members[1], group.member_tokens[1]),
        (stranger, stranger_token),
        (group.members[0], OPERATOR_TOKEN),
    ]:
        payload = await rename(api, account, token, "renamed")
        assert payload["userErrors"] == [], payload
    return group, stranger, stranger_token


def _acting(found: dict[str, Any]) -> list[str | None]:
    return [
        entry["account"]["id"] if entry["account"] else None
        for entry in nodes(found)
        if entry["field"] == "updateAccount"
    ]


async def test_p4_operators_see_every_entry(api: Api) -> None:
    group, stranger, _ = await _everyone_acts(api)
    seen = _acting(await entries(api, field="updateAccount"))
    assert seen == [None, stranger, group.members[1], group.members[0], group.master]


async def test_p2_a_master_sees_its_own_and_its_members_entries(api: Api) -> None:
    group, _stranger, _ = await _everyone_acts(api)
    found = await entries(api, group.master_token, field="updateAccount")
    assert _acting(found) == [group.members[1], group.members[0], group.master]
    assert found["totalCount"] == 3  # never the stranger's, never the operator's
    everything = nodes(await entries(api, group.master_token))
    assert {entry["principalKind"] for entry in everything} == {"ACCOUNT_USER"}


async def test_p3_a_member_sees_only_its_own_entries(api: Api) -> None:
    group, _, _ = await _everyone_acts(api)
    found = await entries(api, group.member_tokens[0])
    assert _acting(found) == [group.members[0]]  # not its master's, not its sibling's
    assert found["totalCount"] == 1


async def test_p3_a_stranger_sees_its_own_entries_and_never_another(api: Api) -> None:
    group, stranger, stranger_token = await _everyone_acts(api)
    assert _acting(await entries(api, stranger_token)) == [stranger]
    hidden = await entries(api, stranger_token, accountId=group.master)
    assert hidden["totalCount"] == 0 and hidden["edges"] == []
    master_entry = nodes(await entries(api, group.master_token, field="updateAccount"))[-1]
    assert (await api.gql(NODE, {"id": master_entry["id"]}, stranger_token))["node"] is None
    seen = (await api.gql(NODE, {"id": master_entry["id"]}, group.master_token))["node"]
    assert seen == {"id": master_entry["id"], "field": "updateAccount"}


async def test_p2_a_dissociated_member_leaves_its_masters_audit_view(api: Api) -> None:
    """U5/P3: a former member is invisible to its former master, its entries too."""
    group, _, _ = await _everyone_acts(api)
    dissociate = f"""mutation($input: DissociateMemberInput!) {{
      dissociateMember(input: $input) {{ link {{ id }} {ERRORS} }} }}"""
    await api.ok("dissociateMember", dissociate, {"linkId": group.links[0]})
    found = await entries(api, group.master_token, field="updateAccount")
    assert _acting(found) == [group.members[1], group.master]


async def test_p2_a_master_does_not_see_what_a_member_did_before_it_joined(api: Api) -> None:
    master = await api.account("Master")
    master_token = await api.token(master)
    member = await api.account("Joiner")
    member_token = await api.token(member)
    assert (await rename(api, member, member_token, "before"))["userErrors"] == []
    await api.link(master, member)
    assert (await rename(api, member, member_token, "after"))["userErrors"] == []
    found = nodes(await entries(api, master_token, field="updateAccount"))
    assert [json.loads(entry["input"])["input"]["displayName"] for entry in found] == ["after"]
    own = nodes(await entries(api, member_token, field="updateAccount"))
    assert len(own) == 2  # the member itself sees both


async def test_audit_log_filters_by_account_and_pages(api: Api) -> None:
    group, _, _ = await _everyone_acts(api)
    # The member's own entry and the operator's entry whose object is the member.
    about = nodes(await entries(api, accountId=group.members[0], field="updateAccount"))
    assert [entry["principalKind"] for entry in about] == ["OPERATOR", "ACCOUNT_USER"]
    first = await entries(api, first=2)
    assert len(first["edges"]) == 2 and first["pageInfo"]["hasNextPage"]
    rest = await entries(api, first=500, after=first["pageInfo"]["endCursor"])
    assert len(rest["edges"]) == first["totalCount"] - 2 == rest["totalCount"] - 2
    newest = nodes(first)[0]
    assert nodes(await entries(api, since=newest["at"]))[0]["id"] == newest["id"]
    assert newest["id"] not in {
        entry["id"] for entry in nodes(await entries(api, until=newest["at"], first=500))
    }
    assert (await entries(api, accountId="not-an-id"))["totalCount"] == 0


# ---------------------------------------------------------------- secrets are never recorded


def test_redaction_removes_every_secret_like_field() -> None:
    given = {
        "input": {
            "name": "ok",
            "smtpPassword": "p4ss",
            "webhookSecret": "s3cret",
            "apiToken": "agt_x",
            "api_key": "k",
            "webhookSigningKey": "k2",
            "key": "a cost tag's key",
            "nested": [{"password": "p", "kept": 1}],
            "webhookUrl": "https://user:pw@hooks.example.com/services/T0/B0/XYZ?sig=abc",
            "idempotencyKey": "k-1",
        }
    }
    assert audit.redact(given) == {
        "input": {
            "name": "ok",
            "smtpPassword": audit.REDACTED,
            "webhookSecret": audit.REDACTED,
            "apiToken": audit.REDACTED,
            "api_key": audit.REDACTED,
            "webhookSigningKey": audit.REDACTED,
            "key": "a cost tag's key",
            "nested": [{"password": audit.REDACTED, "kept": 1}],
            "webhookUrl": f"https://hooks.example.com/{audit.REDACTED}",
            "idempotencyKey": "k-1",
        }
    }


def test_redaction_keeps_a_row_small() -> None:
    """Lists over the API's 500-item cap (refused anyway) are cut, with a count."""
    found = audit.redact({"memberIds": [str(n) for n in range(40_000)]})["memberIds"]
    assert len(found) == 501 and found[-1] == "[39500 more]"


SUSPECT = ("pass", "secret", "token", "cvv", "cvc", "card", "url", "uri", "auth", "credential")
NOT_SECRET = {"idempotencyKey"}  # a client's retry key: worth keeping, grants nothing


def _suspect(name: str) -> bool:
    """A name that may hold a credential: the words above, ``pin``, or ``<something>Key``
    (apiKey, privateKey; a cost tag's plain ``key`` is not one)."""
    lowered = name.lower()
    return name not in NOT_SECRET and (
        any(word in lowered for word in SUSPECT)
        or (lowered.endswith("key") and lowered != "key")
        or "pin" in audit._words(name)
    )


def test_every_secret_like_input_field_of_the_schema_is_redacted() -> None:
    """Every input field of the schema whose name looks like a credential (now and as
    fields are added) is either dropped or, for URLs, cut to scheme and host."""
    suspects = []
    for type_ in schema._schema.type_map.values():
        fields = getattr(type_, "fields", None)
        if type(type_).__name__ != "GraphQLInputObjectType" or not fields:
            continue
        for name in fields:
            if _suspect(name):
                suspects.append(f"{type_.name}.{name}")
                assert audit.is_secret(name) or audit.is_url(name), f"{type_.name}.{name}"
    assert "SetNotificationChannelsInput.webhookUrl" in suspects


async def test_secrets_never_appear_in_audit_rows_or_logs(
    api: Api,
    engine: AsyncEngine,
    redis: ArqRedis,
    settings: Settings,
    hook: Receiver,
    captured: io.StringIO,
) -> None:
    """A token (created, then used), a webhook URL's secret, the webhook signing secret
    and the SMTP password the worker used: none is in an audit row or a log line."""
    account = await api.account("Secretive")
    token = await api.token(account)
    assert token.startswith("agt_")
    url_secret = "urlsecret9f2c"
    watched_account = await watched(
        api, "Watched", webhook_url=f"{hook.url}?key={url_secret}", email="ops@example.com"
    )
    payload = await rename(api, account, token, "renamed with a token")
    assert payload["userErrors"] == []
    await api.ok(
        "recordCharge",
        CHARGE,
        {"accountId": watched_account, "amount": "60.00", "description": "usage"},
    )
    # The worker logs in to SMTP with a password (the test server offers no AUTH: each
    # attempt fails after using it) and signs the webhook with the webhook secret.
    smtp_password = "smtp-pw-7c1e4b"
    worker_settings = settings.model_copy(
        update={"smtp_user": "mailer", "smtp_password": smtp_password}
    )
    await drain(worker_settings, engine, redis)
    assert hook.requests, "the webhook was delivered (signed with the secret)"
    assert settings.webhook_secret
    audit_text = await all_audit_text(engine)
    log_text = captured.getvalue()
    assert "setNotificationChannels" in audit_text and "createApiToken" in audit_text
    assert "job done" in log_text  # the worker's lines are in the capture
    assert "not delivered" in log_text  # the SMTP login was tried with the password
    for secret in (token, url_secret, settings.webhook_secret, smtp_password, OPERATOR_TOKEN):
        assert secret not in audit_text, secret
        assert secret not in log_text, secret


async def test_a_mutation_over_websocket_is_audited_with_its_token(
    api: Api, engine: AsyncEngine
) -> None:
    """graphql-transport-ws: the token comes in connection_init; the row names it by its
    fingerprint (the first 16 hex digits of its SHA-256) and the socket's request id."""
    account = await api.account("Socket")
    token = await api.token(account, name="ws-token")
    url = str(api.client.base_url).replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        additional_headers={"X-Request-Id": "ws-req-1"},
    ) as socket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        variables = {"input": {"accountId": account, "displayName": "over ws"}}
        subscribe = {"query": UPDATE_ACCOUNT, "variables": variables}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        message = json.loads(await socket.recv())
    assert message["payload"]["data"]["updateAccount"]["userErrors"] == []
    row = (await rows(engine))[-1]
    assert (row.field, row.outcome, row.token_name, row.request_id) == (
        "updateAccount",
        "OK",
        "ws-token",
        "ws-req-1",
    )
    assert row.token_id == hashlib.sha256(token.encode()).hexdigest()[:16]
    assert row.client_address == "127.0.0.1"


# ---------------------------------------------------------------- append-only, retention


async def test_audit_rows_are_append_only(api: Api, engine: AsyncEngine) -> None:
    await api.account("One")
    for statement in (
        "UPDATE audit_log SET outcome = 'ERROR'",
        "DELETE FROM audit_log",
    ):
        with pytest.raises(DBAPIError, match="never edited or deleted"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    # Even with the purge's setting, a row younger than the retention stays.
    with pytest.raises(DBAPIError, match="never edited or deleted"):
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL accountgraph.audit_retention_days = '30'"))
            await conn.execute(text("DELETE FROM audit_log"))
    assert len(await rows(engine)) == 1


async def test_purge_deletes_only_rows_older_than_the_retention(
    api: Api, engine: AsyncEngine, settings: Settings
) -> None:
    from workers.settings import purge_audit_log

    await api.account("Recent")
    async with engine.begin() as conn:
        for days in (500, 401):
            await conn.execute(
                text(
                    "INSERT INTO audit_log (at, principal_kind, field, outcome, input, request_id)"
                    " VALUES (now() - make_interval(days => :days), 'OPERATOR', 'old', 'OK',"
                    " '{}', 'r')"
                ),
                {"days": days},
            )
        await conn.execute(
            text(
                "INSERT INTO audit_log (at, principal_kind, field, outcome, input, request_id)"
                " VALUES (now() - interval '399 days', 'OPERATOR', 'kept', 'OK', '{}', 'r')"
            )
        )
    assert settings.audit_retention_days == 400
    ctx = {"engine": engine, "job_context": type("Ctx", (), {"settings": settings})()}
    assert await purge_audit_log(ctx) == 2
    assert sorted(row.field for row in await rows(engine)) == ["createAccount", "kept"]
    with pytest.raises(ValueError, match="at least 30"):
        async with engine.begin() as conn:
            await audit.purge(conn, retention_days=7)


# ---------------------------------------------------------------- request ids


async def test_every_http_answer_has_a_request_id(api: Api) -> None:
    answers = [
        await api.client.get("/healthz"),
        await api.client.get("/no-such-route"),
        await api.client.post(
            "/graphql", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        await api.client.post("/graphql", json={"query": "{ __typename }"}),
    ]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(len(found) == 32 and int(found, 16) >= 0 for found in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "sent", ["x" * 129, "has space", "new\u2028line", "semi;colon", 'quote"', ""]
)
async def test_a_malformed_request_id_is_replaced(api: Api, sent: str) -> None:
    response = await api.client.get("/healthz", headers={b"X-Request-Id": sent.encode("utf-8")})
    found = response.headers["x-request-id"]
    assert found != sent and len(found) == 32


async def test_a_well_formed_request_id_is_kept_and_audited(api: Api, engine: AsyncEngine) -> None:
    account = await api.account("Tracked")
    sent = "0f8e2c6a-3b1d-4c5e-9a7b-1d2e3f4a5b6c"
    response = await api.client.post(
        "/graphql",
        json={
            "query": UPDATE_ACCOUNT,
            "variables": {"input": {"accountId": account, "displayName": "x"}},
        },
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "X-Request-Id": sent},
    )
    assert response.headers["x-request-id"] == sent
    assert (await rows(engine))[-1].request_id == sent
    [entry] = nodes(await entries(api, field="updateAccount"))
    assert entry["requestId"] == sent and entry["operationName"] == "Rename"
