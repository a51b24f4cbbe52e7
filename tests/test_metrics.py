"""Issue 15, metrics that answer questions, through real HTTP: operations' latency by
name, errors by code, rate-limit refusals, the DB pool, the outbox backlog and its oldest
unsent row (and /readyz failing on it), jobs by topic; the Grafana dashboard uses only
metrics that /metrics has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import outbox
from accountgraph.app import create_app
from accountgraph.config import Settings
from tests.alerts.support import charge, watched
from tests.conftest import serving
from tests.helpers import ALL_PERMISSIONS, OPERATOR_TOKEN, Api

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
INVITE = """mutation InviteForMetrics($input: InviteMemberInput!) {
  inviteMember(input: $input) { link { id } userErrors { code field } } }"""
ACCEPT = """mutation AcceptForMetrics($input: RespondToInvitationInput!) {
  respondToInvitation(input: $input) { link { id } userErrors { code field } } }"""


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[Any]], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_mutation_and_a_refused_one_move_latency_and_error_counts(api: Api) -> None:
    master, member = await api.account("Metrics master"), await api.account("Metrics member")
    before = await scrape(api.client)

    invited = await api.mutate(
        "inviteMember", INVITE, {"masterId": master, "memberId": member, "type": "TRUSTEESHIP"}
    )
    assert invited["userErrors"] == []
    refused = await api.mutate(
        "inviteMember", INVITE, {"masterId": master, "memberId": master, "type": "TRUSTEESHIP"}
    )
    [error] = refused["userErrors"]
    after = await scrape(api.client)

    latency = ("accountgraph_graphql_operation_seconds_count", {"operation": "other"})
    assert (
        value(after, latency[0], **latency[1], type="mutation")
        - value(before, latency[0], **latency[1], type="mutation")
        == 2
    )
    errors = "accountgraph_graphql_errors_total"
    assert (
        value(after, errors, code=error["code"], kind="user_error")
        - value(before, errors, code=error["code"], kind="user_error")
        == 1
    )
    # An anonymous operation is bucketed as such, never under a name it did not have.
    await api.gql("{ viewer { kind } }")
    anonymous = await scrape(api.client)
    assert (
        value(
            anonymous,
            "accountgraph_graphql_operations_total",
            operation="anonymous",
            type="query",
            outcome="ok",
        )
        >= 1
    )
    # The pool is read at scrape time: its limit is the engine's size plus its overflow.
    assert value(after, "accountgraph_db_pool_limit") >= 1
    assert ("accountgraph_db_pool_in_use", frozenset()) in after
    assert ("accountgraph_db_pool_waiting", frozenset()) in after


async def test_a_rate_limited_operation_is_counted(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, clean: None
) -> None:
    strict = settings.model_copy(update={"rate_limit_cost_per_minute": 1})
    async with (
        serving(create_app(strict, engine, redis)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        before = await scrape(client)
        response = await client.post(
            "/graphql",
            json={"query": "query Tree { accounts(first: 100) { edges { node { id } } } }"},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert response.status_code == 429, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        after = await scrape(client)
    refusals = "accountgraph_rate_limit_refusals_total"
    assert value(after, refusals) - value(before, refusals) == 1
    errors = "accountgraph_graphql_errors_total"
    assert (
        value(after, errors, code="RATE_LIMITED", kind="error")
        - value(before, errors, code="RATE_LIMITED", kind="error")
        == 1
    )


async def test_jobs_are_counted_by_topic_and_outcome(api: Api, run_jobs: Any) -> None:
    master, member = await api.account("Jobs master"), await api.account("Jobs member")
    link = await api.invite(master, member)
    await api.ok(
        "respondToInvitation",
        ACCEPT,
        {"linkId": link, "accept": True, "permissions": ALL_PERMISSIONS},
    )
    before = await scrape(api.client)
    assert value(before, "accountgraph_outbox_unsent") == 2  # S1: both enterprises
    await run_jobs()
    after = await scrape(api.client)
    jobs = "accountgraph_jobs_total"
    labels = {"topic": outbox.SHARING_RECALCULATE, "outcome": "done"}
    assert value(after, jobs, **labels) - value(before, jobs, **labels) == 2
    assert value(after, "accountgraph_outbox_unsent") == 0
    assert value(after, "accountgraph_outbox_pending") == 0


async def test_delivery_failures_are_counted_by_channel_and_whether_final(
    api: Api, run_jobs: Any
) -> None:
    account = await watched(api, "Metrics texted", phone="+15550100")  # no SMS gateway set
    await charge(api, account, "60.00")  # A1: below the threshold, an SMS to send
    before = await scrape(api.client)
    await run_jobs()  # A4: three attempts (the tests' ACCOUNTGRAPH_DELIVERY_ATTEMPTS), all fail
    after = await scrape(api.client)
    name = "accountgraph_delivery_failures_total"
    growth = {
        final: value(after, name, channel="SMS", final=final)
        - value(before, name, channel="SMS", final=final)
        for final in ("false", "true")
    }
    assert growth == {"false": 2, "true": 1}
    assert value(after, name, channel="EMAIL", final="true") == value(
        before, name, channel="EMAIL", final="true"
    )


async def test_readyz_fails_while_an_unsent_outbox_row_is_too_old(
    api: Api, engine: AsyncEngine, settings: Settings
) -> None:
    assert settings.ready_max_outbox_age_s == 300
    assert (await api.client.get("/readyz")).status_code == 200
    async with engine.begin() as conn:
        row_id = (
            await conn.execute(
                text(
                    "INSERT INTO outbox (topic, payload, created_at) "
                    "VALUES ('test.stuck', '{}', now() - interval '1 hour') RETURNING id"
                )
            )
        ).scalar_one()

    stuck = await api.client.get("/readyz")
    assert stuck.status_code == 503
    body = stuck.json()
    assert body["status"] == "unavailable" and body["down"] == ["outbox"]
    assert body["outbox"]["max_age_s"] == 300
    assert body["outbox"]["oldest_unsent_age_s"] >= 3600
    assert "older than" in body["outbox"]["reason"]
    assert value(await scrape(api.client), "accountgraph_outbox_oldest_unsent_age_seconds") >= 3600

    async with engine.begin() as conn:  # the relay caught up
        await conn.execute(text("UPDATE outbox SET sent_at = now() WHERE id = :id"), {"id": row_id})
    assert (await api.client.get("/readyz")).status_code == 200
    assert value(await scrape(api.client), "accountgraph_outbox_oldest_unsent_age_seconds") == 0


async def test_a_row_waiting_for_its_backoff_does_not_make_the_gateway_unready(
    api: Api, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox (topic, payload, created_at, not_before) VALUES "
                "('test.later', '{}', now() - interval '1 hour', now() + interval '1 hour')"
            )
        )
    assert (await api.client.get("/readyz")).status_code == 200


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 10, exprs
    return {name for expr in exprs for name in re.findall(r"\baccountgraph_[a-z_]+", expr)}


async def test_the_dashboard_uses_only_metrics_that_exist(api: Api) -> None:
    body = (await api.client.get("/metrics")).text
    # Every family is announced (# HELP / # TYPE) even before its first sample.
    announced = set(re.findall(r"^# TYPE (\w+) ", body, re.MULTILINE))
    suffixes = ("_bucket", "_count", "_sum", "_total")
    missing = set()
    for name in dashboard_metric_names():
        family = next((name[: -len(end)] for end in suffixes if name.endswith(end)), name)
        if name not in announced and family not in announced:
            missing.add(name)
    assert not missing, missing
    assert "accountgraph_made_up_metric" not in announced  # the check can fail
