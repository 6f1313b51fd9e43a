"""The routes the browser canvas and the JupyterLab Run and Dashboard panels use, on a real Jupyter
server and the session's Temporal: validation while editing, published versions, a run's live
status, what a node got and gave back, its trace, the SLO dashboard and alerts.

Every HTTP reply, and every message of the status socket, is checked against openapi.json.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from tornado.httpclient import HTTPClientError

from conftest import flow_doc
from support.metrics_seed import BUDGET_CONSUMED, BURN, HTTP, TRANSFORM, seed, session_worker_polling
from support.rest import Api, api, create, run_until, runtime, server_config, statuses  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(90)

TRIGGER = {"id": "start", "type": "trigger.manual"}
GREETING = [
    TRIGGER,
    {"id": "greet", "type": "transform", "config": {"output": {"message": "Hello, {{ input.name }}!"}}},
]
PAUSED_GREETING = [
    TRIGGER,
    {"id": "pause", "type": "control.delay", "config": {"seconds": 1}},
    {"id": "greet", "type": "transform", "config": {"output": "Hello, {{ input.name }}!"}},
]
FAILING = [TRIGGER, {"id": "bad", "type": "test.fail", "config": {"fail_times": 1, "permanent": True}}]


@pytest.fixture
def jp_server_config(request):
    # The dashboard test reads a store of its own, seeded with runs whose figures are known;
    # every other test uses the session's store.
    own_store = request.getfixturevalue("store_url") if "seeded" in request.fixturenames else None
    return server_config(database_url=own_store)


async def field_of(reply) -> str:
    assert reply.code == 400, reply.json
    return reply.json["field"]


# ---------------------------------------------------------------------- validation while editing
async def test_validation_names_the_node_and_field_of_a_bad_config_and_the_nodes_of_a_cycle(api):
    bad_config = flow_doc(
        [TRIGGER, {"id": "wait", "type": "control.delay", "config": {"seconds": "soon"}}], [("start", "wait")]
    )
    reply = await api.post("/validate", {"document": bad_config})
    assert reply.code == 200
    [problem] = reply.json["problems"]
    assert (problem["code"], problem["node"], problem["field"]) == ("invalid-config", "wait", "config.seconds")
    assert (
        "'soon' is not of type 'number'" in problem["message"] and problem["location"] == "node 'wait', config.seconds"
    )

    cycle = flow_doc(
        [
            TRIGGER,
            {"id": "a", "type": "transform", "config": {"output": 1}},
            {"id": "b", "type": "transform", "config": {"output": 2}},
        ],
        [("start", "a"), ("a", "b"), ("b", "a")],
    )
    [problem] = (await api.post("/validate", {"document": cycle})).json["problems"]
    assert (problem["code"], problem["node"]) == ("cycle", "a") and "a -> b -> a" in problem["message"]
    assert problem["hint"]

    good = flow_doc(GREETING, [("start", "greet")])
    assert (await api.post("/validate", {"document": good})).json == {"problems": []}
    # Checking is not saving: the document's workflow does not exist afterwards.
    assert (await api.get("/workflows/{workflow_id}", workflow_id=good["meta"]["id"])).code == 404


async def test_an_unknown_node_type_or_a_document_that_is_no_flow_is_a_problem_not_an_error(api):
    unknown = flow_doc([TRIGGER, {"id": "x", "type": "no.such.type"}], [("start", "x")])
    reply = await api.post("/validate", {"document": unknown})
    assert reply.code == 200
    found = {(p["code"], p.get("node"), p.get("field")) for p in reply.json["problems"]}
    assert ("unknown-node-type", "x", "type") in found

    for not_a_flow in ["a string", None, [1, 2], {"nodes": "many"}]:
        reply = await api.post("/validate", {"document": not_a_flow})
        assert reply.code == 200 and reply.json["problems"], not_a_flow
        assert {p["code"] for p in reply.json["problems"]} == {"invalid-document"}

    edgeless = {"version": 1, "nodes": [{"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}}]}
    [missing] = (await api.post("/validate", {"document": edgeless})).json["problems"]
    assert "'edges' is a required property" in missing["message"]


async def test_validating_without_a_document_is_400_naming_the_field(api):
    assert await field_of(await api.post("/validate", "{not json")) == "body"
    assert await field_of(await api.post("/validate", "[1, 2]")) == "body"
    assert await field_of(await api.post("/validate", {})) == "document"
    assert await field_of(await api.post("/validate", {"doc": flow_doc(GREETING, [("start", "greet")])})) == "document"


# ---------------------------------------------------------------------- versions
async def test_each_published_version_keeps_the_document_it_was_published_from(api):
    wid = await create(api, GREETING, [("start", "greet")])
    doc = (await api.get("/workflows/{workflow_id}", workflow_id=wid)).json["document"]
    doc["nodes"][1]["config"]["output"] = {"message": "Goodbye, {{ input.name }}!"}
    assert (await api.put("/workflows/{workflow_id}", {"document": doc}, workflow_id=wid)).code == 200
    assert (await api.post("/workflows/{workflow_id}/publish", {"note": "farewell"}, workflow_id=wid)).code == 201

    first = await api.get("/workflows/{workflow_id}/versions/{version}", workflow_id=wid, version=1)
    second = await api.get("/workflows/{workflow_id}/versions/{version}", workflow_id=wid, version=2)
    assert first.code == second.code == 200
    assert (first.json["version"], second.json["version"], second.json["note"]) == (1, 2, "farewell")
    assert first.json["document"]["nodes"][1]["config"]["output"] == {"message": "Hello, {{ input.name }}!"}
    assert second.json["document"]["nodes"][1]["config"]["output"] == {"message": "Goodbye, {{ input.name }}!"}
    assert first.json["plan_hash"] != second.json["plan_hash"]
    assert second.json["plan"]["nodes"]["greet"]["config"]["output"] == {"message": "Goodbye, {{ input.name }}!"}


async def test_a_version_that_is_no_number_is_400_and_an_unknown_one_404(api):
    wid = await create(api, GREETING, [("start", "greet")])
    for bad in ["x", "1.5", "-1", "0x1", "1234567890"]:
        assert (
            await field_of(await api.get("/workflows/{workflow_id}/versions/{version}", workflow_id=wid, version=bad))
            == "version"
        )
    missing = await api.get("/workflows/{workflow_id}/versions/{version}", workflow_id=wid, version=7)
    assert missing.code == 404 and f"{wid}@7" in missing.json["error"]
    nowhere = await api.get("/workflows/{workflow_id}/versions/{version}", workflow_id="nope", version=1)
    assert nowhere.code == 404 and "workflow with id 'nope'" in nowhere.json["error"]


# ---------------------------------------------------------------------- a run's live status
async def receive_all(ws, api: Api) -> list[dict]:
    """Every message until the server closes, each checked against openapi.json."""
    messages: list[dict] = []
    while (text := await asyncio.wait_for(ws.read_message(), 30)) is not None:
        message = json.loads(text)
        api.conforms(message, "#/components/schemas/RunStatusMessage", f"status message {len(messages)}")
        messages.append(message)
    return messages


async def test_the_status_socket_pushes_the_run_from_running_to_success_with_node_statuses(api, jp_ws_fetch):
    wid = await create(api, PAUSED_GREETING, [("start", "pause"), ("pause", "greet")])
    run_id = (await api.post("/workflows/{workflow_id}/runs", {"input": {"name": "Ada"}}, workflow_id=wid)).json[
        "run_id"
    ]

    ws = await jp_ws_fetch("floworch", "api", "runs", run_id, "status")
    messages = await receive_all(ws, api)
    assert ws.close_code == 1000
    runs = [m["run"] for m in messages]
    assert all(m["type"] == "run" for m in messages) and {r["run_id"] for r in runs} == {run_id}

    first, last = runs[0], runs[-1]
    assert first["status"] == "running" and statuses(first)["greet"] == "idle"
    assert any(statuses(r)["pause"] in ("running", "waiting") for r in runs)
    assert last["status"] == "success" and last["end_time"] is not None
    assert statuses(last) == {"start": "success", "pause": "success", "greet": "success"}
    assert last["result"] == {"outputs": {"greet": "Hello, Ada!"}}
    # A message is sent when something changed, never twice the same state.
    states = [(r["status"], statuses(r)) for r in runs]
    assert all(a != b for a, b in itertools.pairwise(states)), states

    # A finished run: its final state once, then the close.
    again = await jp_ws_fetch("floworch", "api", "runs", run_id, "status")
    [final] = await receive_all(again, api)
    assert final["run"]["status"] == "success" and again.close_code == 1000


async def test_the_status_socket_of_an_unknown_run_says_so_and_closes(api, jp_ws_fetch):
    ws = await jp_ws_fetch("floworch", "api", "runs", "no-such-run", "status")
    [message] = await receive_all(ws, api)
    assert message["type"] == "error" and "no run with id 'no-such-run'" in message["error"]
    assert ws.close_code == 4404


async def test_the_status_socket_needs_jupyter_authentication(jp_ws_fetch):
    with pytest.raises(HTTPClientError) as refused:
        await jp_ws_fetch("floworch", "api", "runs", "any", "status", headers={"Authorization": ""})
    assert refused.value.code == 403


# ---------------------------------------------------------------------- inspecting a run
async def test_inspecting_a_node_shows_what_it_was_given_and_returned(api):
    wid = await create(api, GREETING, [("start", "greet")])
    run_id = (await api.post("/workflows/{workflow_id}/runs", {"input": {"name": "Ada"}}, workflow_id=wid)).json[
        "run_id"
    ]
    await run_until(api, run_id, lambda r: r["status"] == "success")

    reply = await api.get("/runs/{run_id}/nodes/{node_id}", run_id=run_id, node_id="greet")
    assert reply.code == 200
    node = reply.json
    assert (node["node"], node["type"], node["status"]["status"]) == ("greet", "transform", "success")
    assert node["config"] == {"output": {"message": "Hello, {{ input.name }}!"}}
    [call] = node["calls"].values()
    assert call["output"] == {"message": "Hello, Ada!"} and call["error"] is None
    assert node["run"]["version"] == "1" and len(node["run"]["plan_hash"]) == 64


async def test_inspecting_a_failed_node_shows_its_error_and_the_trace_its_attempt(api):
    wid = await create(api, FAILING, [("start", "bad")])
    run_id = (await api.post("/workflows/{workflow_id}/runs", workflow_id=wid)).json["run_id"]
    await run_until(api, run_id, lambda r: r["status"] == "failed")

    node = (await api.get("/runs/{run_id}/nodes/{node_id}", run_id=run_id, node_id="bad")).json
    assert node["status"]["status"] == "failed"
    [call] = node["calls"].values()
    assert call["output"] is None and call["error"] and all(c["message"] for c in call["error"])

    trace = await api.get("/runs/{run_id}/trace", run_id=run_id)
    assert trace.code == 200
    by_node = {s["node"]: s for s in trace.json["segments"]}
    assert (by_node["start"]["kind"], by_node["start"]["status"]) == ("trigger", "success")
    bad = by_node["bad"]
    assert (bad["kind"], bad["status"], bad["attempt"]) == ("activity", "failed", 1) and bad["error"]
    assert datetime.fromisoformat(bad["ended"]) >= datetime.fromisoformat(bad["started"])


async def test_an_unknown_run_or_node_is_404_naming_it(api):
    wid = await create(api, GREETING, [("start", "greet")])
    run_id = (await api.post("/workflows/{workflow_id}/runs", {"input": {"name": "Ada"}}, workflow_id=wid)).json[
        "run_id"
    ]
    await run_until(api, run_id, lambda r: r["status"] == "success")

    ghost = await api.get("/runs/{run_id}/nodes/{node_id}", run_id=run_id, node_id="ghost")
    assert ghost.code == 404 and "ghost" in ghost.json["error"] and "start, greet" in ghost.json["error"]
    for reply in [
        await api.get("/runs/{run_id}/nodes/{node_id}", run_id="no-such-run", node_id="greet"),
        await api.get("/runs/{run_id}/trace", run_id="no-such-run"),
    ]:
        assert reply.code == 404 and "no-such-run" in reply.json["error"]


# ---------------------------------------------------------------------- the dashboard
@pytest.fixture
def seeded(store) -> datetime:
    """The server's own store, seeded; returns its "now": a week ago, before any run of the
    session's Temporal (whose runs the server copies into it), and well inside retention."""
    until = (datetime.now(UTC) - timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    seed(store, until)
    return until


async def test_the_dashboard_shows_the_figures_of_the_seeded_runs(api, seeded, service, supervisor):
    until = seeded
    reply = await api.get("/dashboard", params={"range": "2h", "until": until.isoformat(), "bucket": "1h"})
    assert reply.code == 200
    data = reply.json
    assert (data["bucket"], data["slo"]) == ("1h", 99.95)
    assert [datetime.fromisoformat(data[k]) for k in ("since", "until")] == [until - timedelta(hours=2), until]

    # Runs that ended in the two hours: cancelled ones are counted, but not in the rate.
    assert data["success"] == {
        "success": 208,
        "failed": 2,
        "cancelled": 2,
        "total": 210,
        "success_rate": pytest.approx(208 / 210),
    }
    rate = data["success_rate"]
    assert [datetime.fromisoformat(b["bucket"]) for b in rate] == [
        until - timedelta(hours=2),
        until - timedelta(hours=1),
    ]
    assert [[b["success"], b["failed"], b["cancelled"], b["total"]] for b in rate] == [[199, 1, 0, 200], [9, 1, 2, 10]]
    assert [b["success_rate"] for b in rate] == pytest.approx([0.995, 0.9])
    throughput = [
        [b[s] for s in ("queued", "running", "success", "failed", "cancelled", "total")] for b in data["throughput"]
    ]
    assert throughput == [[0, 0, 199, 1, 0, 200], [0, 1, 9, 1, 2, 13]]

    latency = {row.pop("node_type"): row for row in data["latency"]}
    assert latency == {
        "http": pytest.approx(HTTP),
        "transform": pytest.approx(TRANSFORM),
    }  # timer waits are no activity

    burn = [
        tuple(
            b[k] for k in ("window", "success", "failed", "total", "error_rate", "burn_rate", "threshold", "alerting")
        )
        for b in data["burn_rates"]
    ]
    assert burn == [tuple(pytest.approx(v) if isinstance(v, float) else v for v in row) for row in BURN]
    budget = data["budget"]
    assert (budget["window"], budget["success"], budget["failed"], budget["total"]) == ("30d", 10998, 2, 11000)
    assert budget["budget_remaining"] == pytest.approx(1 - BUDGET_CONSUMED)

    # Queues and workers are Temporal's now: the session's worker polls both task types.
    await session_worker_polling(service, supervisor)
    [worker_pid] = supervisor.worker_pids()
    live = (await api.get("/dashboard", params={"range": "2h", "until": until.isoformat()})).json
    queues = {(q["task_queue"], q["type"]): q for q in live["queues"]}
    assert queues[("floworch", "workflow")]["pollers"] >= 1 and queues[("floworch", "activity")]["pollers"] >= 1
    ours = [w for w in live["workers"] if w["identity"].startswith(f"{worker_pid}@") and w["task_queue"] == "floworch"]
    assert {w["type"] for w in ours} == {"workflow", "activity"}
    assert all(w["healthy"] and w["seconds_since_poll"] < 70 and w["last_access_time"] for w in ours)


async def test_the_dashboard_shows_the_last_day_by_default(api):
    reply = await api.get("/dashboard")
    assert reply.code == 200
    since, until = (datetime.fromisoformat(reply.json[k]) for k in ("since", "until"))
    assert until - since == timedelta(hours=24) and abs(datetime.now(UTC) - until) < timedelta(minutes=1)
    assert (reply.json["bucket"], reply.json["slo"]) == ("30m", 99.95)
    assert [b["window"] for b in reply.json["burn_rates"]] == ["1h", "6h", "24h", "72h"]
    week = await api.get("/dashboard", params={"range": "7d", "slo": "99"})
    assert (week.json["bucket"], week.json["slo"], week.json["budget"]["slo"]) == ("3h", 99.0, 99.0)


async def test_dashboard_requests_with_bad_arguments_are_400_naming_the_argument(api):
    async def bad(**params) -> str:
        return await field_of(await api.get("/dashboard", params=params))

    assert await bad(range="banana") == "range"
    assert await bad(range="0h") == "range"
    assert await bad(range="99999999999d") == "range"
    assert await bad(until="yesterday") == "until"
    assert await bad(slo="100") == "slo"
    assert await bad(slo="most") == "slo"
    assert await bad(bucket="often") == "bucket"
    assert await bad(range="30d", bucket="1s") == "bucket"  # 2.6 million buckets


# ---------------------------------------------------------------------- alerts
async def test_alerts_are_listed_newest_first_and_filtered_by_whether_they_are_open(api, runtime):
    store = (await runtime.service()).store
    # Disabled: the server's own evaluations leave this rule's alerts alone.
    rule = store.add_alert_rule(name=f"ui-{uuid.uuid4().hex[:8]}", kind="queue_backlog", threshold=10, enabled=False)
    start = datetime.now(UTC) - timedelta(minutes=30)
    _, earlier = store.judge_alert(rule["id"], violated=True, value=25, message="25 tasks waiting", at=start)
    store.judge_alert(rule["id"], violated=False, value=None, message="", at=start + timedelta(minutes=5))
    _, later = store.judge_alert(
        rule["id"], violated=True, value=40, message="40 tasks waiting", at=start + timedelta(minutes=10)
    )

    def ours(reply) -> list[tuple]:
        assert reply.code == 200, reply.json
        return [(a["id"], a["open"], a["message"]) for a in reply.json if a["rule"] == rule["name"]]

    everything = await api.get("/alerts")
    assert ours(everything) == [(later["id"], True, "40 tasks waiting"), (earlier["id"], False, "25 tasks waiting")]
    opened = [datetime.fromisoformat(a["opened_at"]) for a in everything.json]
    assert opened == sorted(opened, reverse=True)
    mine = next(a for a in everything.json if a["id"] == later["id"])
    assert (mine["kind"], mine["threshold"], mine["value"], mine["cleared_at"]) == ("queue_backlog", 10, 40, None)

    open_only = await api.get("/alerts", params={"open": "true"})
    assert ours(open_only) == [(later["id"], True, "40 tasks waiting")] and all(a["open"] for a in open_only.json)
    cleared = await api.get("/alerts", params={"open": "false"})
    assert ours(cleared) == [(earlier["id"], False, "25 tasks waiting")] and not any(a["open"] for a in cleared.json)
    assert len((await api.get("/alerts", params={"limit": "1"})).json) == 1

    assert await field_of(await api.get("/alerts", params={"open": "maybe"})) == "open"
    assert await field_of(await api.get("/alerts", params={"limit": "0"})) == "limit"
    assert await field_of(await api.get("/alerts", params={"limit": "1001"})) == "limit"
