"""Debugging a run from the notebook and the Run panel, on the session's real Temporal:

- ``run.replay()``: a finished run replays against the current interpreter; a draft that removes
  or inserts a node the run executed does not, and the answer names the node;
- ``run.node(id).rerun_here(config=..., input=...)``: a failed node, run again here on the inputs it
  had, with a fixed config, gives its output and log lines while the run stays as it was;
- ``fo.diff(a, b)``: runs of one flow with other inputs, and runs of two versions;
- the REST routes of the Run panel ("Try here" on a worker, the diff) on a real Jupyter server.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from http.server import BaseHTTPRequestHandler

import pytest

import floworch as fo
from conftest import finished, nodes_by_id
from floworch_server.errors import BadRequest, Conflict, NotFound
from floworch_server.flowdoc import FlowDocument
from support.receiver import send_json, serve
from support.rest import api, create, jp_server_config, run_until  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TRIGGER = {"id": "start", "type": "trigger.manual"}
CHAIN = [
    TRIGGER,
    {"id": "a", "type": "transform", "config": {"output": "{{ input.name }}"}},
    {"id": "b", "type": "transform", "config": {"output": "Hello, {{ nodes.a.output }}"}},
    {"id": "c", "type": "transform", "config": {"output": {"greeting": "{{ nodes.b.output }}"}}},
]
CHAIN_EDGES = [("start", "a"), ("a", "b"), ("b", "c")]


@pytest.fixture
def orders():
    """A small HTTP API: /orders answers 200 with the orders, anything else 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, payload = (
                (200, {"orders": [{"id": 7, "total": 12.5}]})
                if self.path == "/orders"
                else (404, {"error": "no such page"})
            )
            send_json(self, status, payload)

        def log_message(self, *args):
            pass

    server, url = serve(Handler)
    yield url
    server.shutdown()


def fetching(base: str) -> tuple[list[dict], list]:
    """start -> fetch (GET base + input.path) -> total: a flow whose fetch fails on a wrong path."""
    nodes: list[dict] = [
        TRIGGER,
        {"id": "fetch", "type": "action.http", "config": {"method": "GET", "url": base + "/{{ input.path }}"}},
        {"id": "total", "type": "transform", "config": {"output": "{{ nodes.fetch.output.body.orders[0].total }}"}},
    ]
    return nodes, [("start", "fetch"), ("fetch", "total")]


async def run_of(service, workflow_id: str, input=None, version=None) -> dict:
    return await finished(
        service, (await service.start_run(workflow_id, input=input, version=version, by="tester"))["run_id"]
    )


async def history_length(service, run_id: str) -> int:
    return len((await service.handle(run_id).fetch_history()).events)


def without(doc: dict, node_id: str, bridge: tuple[str, str]) -> dict:
    """The document with ``node_id`` removed and ``bridge`` connected in its place."""
    out = copy.deepcopy(doc)
    out["nodes"] = [n for n in out["nodes"] if n["id"] != node_id]
    out["edges"] = [e for e in out["edges"] if node_id not in (e["source"], e["target"])] + [
        {"id": "bridge", "source": bridge[0], "target": bridge[1]}
    ]
    return out


# ---------------------------------------------------------------------- replay
async def test_a_finished_run_replays_deterministically_against_the_current_interpreter(service, published):
    flow = await published(CHAIN, CHAIN_EDGES)
    run = await run_of(service, flow, {"name": "Ada"})
    assert run["status"] == "success"

    result = await asyncio.to_thread(fo.get_run(run["run_id"]).replay)
    assert result and result.deterministic
    assert result.divergence is None and result.node is None
    assert result.data["events"] == await history_length(service, run["run_id"])
    assert "replays deterministically" in result._repr_html_()


async def test_a_draft_that_removes_a_node_the_run_executed_does_not_replay_and_names_the_node(service, published):
    flow = await published(CHAIN, CHAIN_EDGES)
    run_id = (await run_of(service, flow, {"name": "Ada"}))["run_id"]
    doc = service.get_workflow(flow)["document"]
    edited = without(doc, "b", ("a", "c"))
    next(n for n in edited["nodes"] if n["id"] == "c")["config"]["output"] = {"greeting": "{{ nodes.a.output }}"}
    draft = fo.Flow(FlowDocument.model_validate(edited))

    result = await asyncio.to_thread(fo.get_run(run_id).replay, plan=draft.draft)
    assert not result.deterministic
    assert result.node == "b"
    assert "node 'b' ran in this run" in result.divergence["reason"] and "(removed)" in result.divergence["reason"]
    assert "Nondeterminism" in result.divergence["message"]  # Temporal's own words come along
    assert result.plan_changes["nodes_removed"] == ["b"]
    # The run itself is what it was: replaying reads a copy of its history.
    assert (await service.get_run(run_id))["status"] == "success"


async def test_a_draft_that_inserts_a_node_before_one_the_run_executed_names_both(service, published):
    flow = await published(CHAIN, CHAIN_EDGES)
    run_id = (await run_of(service, flow, {"name": "Ada"}))["run_id"]
    doc = copy.deepcopy(service.get_workflow(flow)["document"])
    doc["nodes"].append(
        {"id": "audit", "type": "transform", "position": {"x": 0, "y": 0}, "config": {"output": "seen"}}
    )
    doc["edges"] = [e for e in doc["edges"] if e["target"] != "a"] + [
        {"id": "s-audit", "source": "start", "target": "audit"},
        {"id": "audit-a", "source": "audit", "target": "a"},
    ]

    result = await service.replay(run_id, plan=_compiled(doc))
    assert not result["deterministic"]
    div = result["divergence"]
    assert (div["node"], div["draft_node"]) == ("a", "audit")
    assert "the run called node 'a' here" in div["reason"] and "'audit' is new in the draft" in div["reason"]
    assert isinstance(div["event_id"], int)


async def test_a_draft_that_only_changes_a_config_still_replays_and_says_what_changed(service, published):
    flow = await published(CHAIN, CHAIN_EDGES)
    run_id = (await run_of(service, flow, {"name": "Ada"}))["run_id"]
    doc = copy.deepcopy(service.get_workflow(flow)["document"])
    next(n for n in doc["nodes"] if n["id"] == "b")["config"]["output"] = "Hi, {{ nodes.a.output }}"

    result = await asyncio.to_thread(fo.get_run(run_id).replay, plan=doc)
    assert result.deterministic
    [changed] = result.plan_changes["nodes_changed"]
    assert changed["node"] == "b" and changed["fields"] == ["config"]
    assert changed["config"] == [
        {"path": "$.output", "change": "changed", "a": "Hello, {{ nodes.a.output }}", "b": "Hi, {{ nodes.a.output }}"}
    ]


async def test_replay_of_an_unknown_run_or_another_tenants_run_is_not_found(service, published):
    with pytest.raises(NotFound, match="no run with id 'run-nope'"):
        await service.replay("run-nope")
    flow = await published(CHAIN, CHAIN_EDGES)
    run_id = (await run_of(service, flow, {"name": "Ada"}))["run_id"]
    with pytest.raises(NotFound):
        await service.for_tenant("other-tenant").replay(run_id)
    with pytest.raises(BadRequest, match="plan: must be a compiled plan"):
        await service.replay(run_id, plan={"nodes": "not a plan"})


def _compiled(doc: dict) -> dict:
    from floworch_server.plan import compile_plan

    return compile_plan(FlowDocument.model_validate(doc)).to_data()


# ---------------------------------------------------------------------- re-run one node here
async def test_rerun_here_of_a_failed_node_with_a_fixed_config_gives_output_and_logs_and_leaves_the_run_as_it_was(
    service, published, orders
):
    flow = await published(*fetching(orders))
    run = await run_of(service, flow, {"path": "ordrs"})  # a typo: 404, which is not retried
    assert run["status"] == "failed" and nodes_by_id(run)["fetch"]["status"] == "failed"
    before = (await history_length(service, run["run_id"]), len(service.store.list_logs(run["run_id"])))

    node = fo.get_run(run["run_id"]).node("fetch")
    again = await asyncio.to_thread(node.rerun_here)  # as it was: the same failure, as the answer
    assert again.status == "failed" and again.error["kind"] == "HttpStatus404"
    assert again.error["message"] == again.recorded["error"][0]["message"]
    assert again.config["url"] == f"{orders}/ordrs"  # the config as resolved in the run

    fixed = await asyncio.to_thread(node.rerun_here, config={"url": f"{orders}/orders"})
    assert fixed.ok and fixed.status == "success"
    assert fixed.output["status"] == 200 and fixed.output["body"] == {"orders": [{"id": 7, "total": 12.5}]}
    assert list(fixed.logs["message"]) == [f"GET {orders}/orders -> 200"]
    assert fixed.inputs == {"start": {"path": "ordrs"}} and fixed.config["method"] == "GET"

    # Nothing of this reached the run: same status, same history, no new log lines.
    after = await service.get_run(run["run_id"])
    assert after["status"] == "failed" and nodes_by_id(after)["fetch"]["status"] == "failed"
    assert (await history_length(service, run["run_id"]), len(service.store.list_logs(run["run_id"]))) == before


async def test_rerun_here_takes_inputs_by_upstream_node_id(service, published):
    flow = await published(CHAIN, CHAIN_EDGES)
    run_id = (await run_of(service, flow, {"name": "Ada"}))["run_id"]
    node = fo.get_run(run_id).node("b")
    same = await asyncio.to_thread(node.rerun_here)
    assert same.output == "Hello, Ada" and same.inputs == {"a": "Ada"}
    # A transform's output was resolved from its inputs in the run; the override is the resolved value.
    changed = await asyncio.to_thread(node.rerun_here, config={"output": "Hello, Grace"}, input={"a": "Grace"})
    assert changed.output == "Hello, Grace" and changed.inputs == {"a": "Grace"}


async def test_rerun_overrides_are_checked_against_the_node_schema_and_its_inputs(service, published, orders):
    flow = await published(*fetching(orders))
    run_id = (await run_of(service, flow, {"path": "ordrs"}))["run_id"]
    cases = [
        ({"config": {"method": "FETCH"}}, "config.method", "'FETCH' is not one of"),
        ({"config": {"retries": 3}}, "config", "Additional properties are not allowed ('retries' was unexpected)"),
        ({"config": {"url": "ftp://example"}}, "config.url", "does not match"),
        ({"config": "GET"}, "config", "must be an object of config fields"),
        (
            {"input": {"extract": {}}},
            "input.extract",
            "node 'fetch' has no input from 'extract': its inputs are by upstream node id (start)",
        ),
        ({"input": [1]}, "input", "must be an object of inputs by upstream node id"),
    ]
    for overrides, field, message in cases:
        with pytest.raises(BadRequest) as refused:
            await service.rerun_node(run_id, "fetch", **overrides)
        assert refused.value.field == field and message in str(refused.value), (overrides, str(refused.value))
        assert "node 'fetch'" in str(refused.value) or (
            field in ("config", "input") and "must be" in str(refused.value)
        )


async def test_rerun_of_an_unknown_run_an_unknown_node_or_a_node_that_never_ran_says_why(service, published, orders):
    flow = await published(*fetching(orders))
    run_id = (await run_of(service, flow, {"path": "ordrs"}))["run_id"]
    with pytest.raises(NotFound, match="no run with id 'run-missing'"):
        await service.rerun_node("run-missing", "fetch")
    with pytest.raises(NotFound, match=r"no node with id 'fecth' \(nodes of run '.*': start, fetch, total\)"):
        await service.rerun_node(run_id, "fecth")
    with pytest.raises(
        Conflict,
        match=r"node 'total' of run '.*' has no recorded inputs: it was never called in that run \(its status is idle\)",
    ):
        await service.rerun_node(run_id, "total")
    with pytest.raises(BadRequest, match="node 'start' is a trigger node"):
        await service.rerun_node(run_id, "start")
    with pytest.raises(NotFound):
        await service.for_tenant("other-tenant").rerun_node(run_id, "fetch")


# ---------------------------------------------------------------------- diff
CALC = [
    TRIGGER,
    {"id": "calc", "type": "transform", "config": {"output": {"total": "{{ input.n * 2 }}", "label": "order"}}},
    {"id": "wrap", "type": "transform", "config": {"output": {"result": "{{ nodes.calc.output.total }}"}}},
]
CALC_EDGES = [("start", "calc"), ("calc", "wrap")]


async def test_a_diff_of_two_runs_with_other_inputs_shows_the_output_differences_and_the_first_divergence(
    service, published
):
    flow = await published(CALC, CALC_EDGES)
    a, b = await run_of(service, flow, {"n": 1}), await run_of(service, flow, {"n": 2})

    d = await asyncio.to_thread(fo.diff, fo.get_run(a["run_id"]), b["run_id"])
    assert d.plan["same"] and not d.same
    assert d.first_divergence["node"] == "start" and d.first_divergence["reasons"] == ["input: 1 path(s) differ"]
    frame = d.frame.set_index("node")
    assert list(frame.index) == ["start", "calc", "wrap"]
    assert (
        (frame["plan"] == "same").all()
        and (frame["status_a"] == "success").all()
        and (frame["status_b"] == "success").all()
    )
    assert frame.loc["calc", "output_changes"] == 1 and frame.loc["start", "first"] and not frame.loc["calc", "first"]
    assert d.outputs("calc").to_dict("records") == [{"path": "$.total", "change": "changed", "a": 2, "b": 4}]
    assert d.outputs("wrap").to_dict("records") == [{"path": "$.result", "change": "changed", "a": 2, "b": 4}]
    assert (frame["duration_ms_a"].notna()).all()

    figure = d.figure()
    assert {t.xaxis for t in figure.data} == {"x", "x2"}  # one Gantt per run, side by side
    assert set(figure.data[0].y) <= {"start", "calc", "wrap"}
    html = d._repr_html_()
    assert "first divergence: start" in html and "$.total" in html

    same = await asyncio.to_thread(fo.diff, a["run_id"], a["run_id"])
    assert same.same and same.first_divergence is None


async def test_a_diff_of_runs_of_two_versions_shows_the_plan_difference(service, published):
    flow = await published(CALC, CALC_EDGES)
    doc = copy.deepcopy(service.get_workflow(flow)["document"])
    next(n for n in doc["nodes"] if n["id"] == "calc")["config"]["output"]["label"] = "invoice"
    doc["nodes"].append(
        {"id": "notify", "type": "transform", "position": {"x": 0, "y": 0}, "config": {"output": "sent"}}
    )
    doc["edges"].append({"id": "wrap-notify", "source": "wrap", "target": "notify"})
    service.save_draft(flow, doc, by="tester")
    await service.publish(flow, note="v2", by="tester")
    a, b = await run_of(service, flow, {"n": 1}, version=1), await run_of(service, flow, {"n": 1}, version=2)

    d = await service.diff_runs(a["run_id"], b["run_id"])
    plan = d["plan"]
    assert not plan["same"] and plan["nodes_added"] == ["notify"] and plan["nodes_removed"] == []
    assert plan["edges_added"] == ["wrap.out -> notify"]
    [changed] = plan["nodes_changed"]
    assert changed == {
        "node": "calc",
        "fields": ["config"],
        "config": [{"path": "$.output.label", "change": "changed", "a": "order", "b": "invoice"}],
    }
    rows = {r["node"]: r for r in d["nodes"]}
    assert (
        rows["notify"]["plan"] == "added"
        and rows["notify"]["status_a"] is None
        and rows["notify"]["status_b"] == "success"
    )
    assert rows["calc"]["output_changes"] == [{"path": "$.label", "change": "changed", "a": "order", "b": "invoice"}]
    assert d["first_divergence"]["node"] == "calc"
    assert d["first_divergence"]["reasons"] == ["plan: node changed (config)", "output: 1 path(s) differ"]
    assert (d["a"]["version"], d["b"]["version"]) == ("1", "2")


async def test_a_diff_of_a_failed_run_and_its_resumed_run_shows_the_reused_nodes_as_the_same(
    service, published, orders
):
    nodes = [TRIGGER, {"id": "name", "type": "transform", "config": {"output": "{{ input.name }}"}},
             {"id": "fetch", "type": "action.http", "config": {"method": "GET", "url": orders + "/ordrs"}}]  # fmt: skip
    flow = await published(nodes, [("start", "name"), ("name", "fetch")])
    old = await run_of(service, flow, {"name": "Ada"})
    assert old["status"] == "failed"
    doc = copy.deepcopy(service.get_workflow(flow)["document"])
    next(n for n in doc["nodes"] if n["id"] == "fetch")["config"]["url"] = orders + "/orders"
    service.save_draft(flow, doc, by="tester")
    await service.publish(flow, by="tester")
    [retried] = await service.retry_runs([old["run_id"]], mode="resume", version="latest", by="tester")
    assert retried["reused"] == ["name"]
    new = await finished(service, retried["retry_run_id"])

    d = await service.diff_runs(old["run_id"], new["run_id"])
    rows = {r["node"]: r for r in d["nodes"]}
    # The reused node was not called again: same output, no attempt of its own, and no difference.
    assert (rows["name"]["output_a"], rows["name"]["output_b"]) == ("Ada", "Ada")
    assert (rows["name"]["attempts_a"], rows["name"]["attempts_b"], rows["name"]["differs"]) == (1, 0, [])
    assert d["first_divergence"]["node"] == "fetch"


async def test_a_replay_that_diverges_prints_no_warning_of_temporals_core(service, published, capfd):
    """The divergence is the answer; in a notebook, the core's warning (on the process's own
    stdout) would land in the cell."""
    flow = await published(CHAIN, CHAIN_EDGES)
    run_id = (await run_of(service, flow, {"name": "Ada"}))["run_id"]
    edited = without(service.get_workflow(flow)["document"], "b", ("a", "c"))
    next(n for n in edited["nodes"] if n["id"] == "c")["config"]["output"] = {"greeting": "{{ nodes.a.output }}"}
    capfd.readouterr()
    result = await service.replay(run_id, plan=_compiled(edited))
    assert not result["deterministic"] and "Nondeterminism" in result["divergence"]["message"]
    printed = capfd.readouterr()
    assert "Nondeterminism" not in printed.out + printed.err


async def test_a_diff_with_an_unknown_run_is_not_found(service, published):
    flow = await published(CALC, CALC_EDGES)
    a = await run_of(service, flow, {"n": 1})
    with pytest.raises(NotFound, match="no run with id 'run-gone'"):
        await service.diff_runs(a["run_id"], "run-gone")


# ---------------------------------------------------------------------- the Run panel's routes
async def test_try_here_runs_the_node_on_a_worker_as_a_test_run_and_leaves_the_run_alone(api, orders):
    nodes, edges = fetching(orders)
    workflow_id = await create(api, nodes, edges)
    started = await api.post("/workflows/{workflow_id}/runs", {"input": {"path": "ordrs"}}, workflow_id=workflow_id)
    run = await run_until(api, started.json["run_id"], lambda r: r["status"] == "failed")
    run_id = run["run_id"]

    tried = await api.post(
        "/runs/{run_id}/nodes/{node_id}/try", {"config": {"url": f"{orders}/orders"}}, run_id=run_id, node_id="fetch"
    )
    assert tried.code == 200, tried.json
    t = tried.json
    assert (t["status"], t["where"], t["error"]) == ("success", "worker", None)
    assert t["output"]["body"] == {"orders": [{"id": 7, "total": 12.5}]}
    assert [line["message"] for line in t["logs"]] == [f"GET {orders}/orders -> 200"]
    assert t["recorded"]["error"][0]["type"] == "HttpStatus404"

    # The try is a run of its own, marked as a test of a draft, of the same flow.
    test_run = (await api.get("/runs/{run_id}", run_id=t["test_run_id"])).json
    assert (test_run["trigger"], test_run["version"], test_run["workflow_id"], test_run["status"]) == (
        "test",
        "draft",
        workflow_id,
        "success",
    )
    assert test_run["search_attributes"]["test_of"] == {"run_id": run_id, "node": "fetch", "call": "fetch"}
    assert [n["node"] for n in test_run["nodes"]] == ["start", "fetch"]
    # The real run has not moved.
    again = (await api.get("/runs/{run_id}", run_id=run_id)).json
    assert again["status"] == "failed" and {n["node"]: n["status"] for n in again["nodes"]} == {
        n["node"]: n["status"] for n in run["nodes"]
    }

    # Without the fix it fails as the run did, and says so in the answer (not as an error reply).
    failed = await api.post("/runs/{run_id}/nodes/{node_id}/try", {}, run_id=run_id, node_id="fetch")
    assert failed.code == 200 and failed.json["status"] == "failed" and failed.json["error"]["kind"] == "HttpStatus404"


async def test_try_here_refuses_bad_requests_clearly_and_starts_nothing(api, orders, service):
    nodes, edges = fetching(orders)
    workflow_id = await create(api, nodes, edges)
    started = await api.post("/workflows/{workflow_id}/runs", {"input": {"path": "ordrs"}}, workflow_id=workflow_id)
    run_id = (await run_until(api, started.json["run_id"], lambda r: r["status"] == "failed"))["run_id"]
    runs_before = len((await api.get("/runs", params={"workflow_id": workflow_id})).json)

    cases = [
        ("run-nope", "fetch", {}, 404, None),
        (run_id, "fecth", {}, 404, None),
        (run_id, "total", {}, 409, None),
        (run_id, "fetch", {"config": {"method": "FETCH"}}, 400, "config.method"),
        (run_id, "fetch", {"config": "GET"}, 400, "config"),
        (run_id, "fetch", {"input": {"nobody": 1}}, 400, "input.nobody"),
    ]
    for rid, node, body, code, field in cases:
        reply = await api.post("/runs/{run_id}/nodes/{node_id}/try", body, run_id=rid, node_id=node)
        assert reply.code == code, (rid, node, body, reply.json)
        assert reply.json["field"] == field and reply.json["error"]
    assert (
        "has no recorded inputs"
        in (await api.post("/runs/{run_id}/nodes/{node_id}/try", {}, run_id=run_id, node_id="total")).json["error"]
    )
    assert len((await api.get("/runs", params={"workflow_id": workflow_id})).json) == runs_before


async def test_the_diff_route_compares_two_runs(api):
    workflow_id = await create(api, CALC, CALC_EDGES)
    ids = []
    for n in (1, 3):
        started = await api.post("/workflows/{workflow_id}/runs", {"input": {"n": n}}, workflow_id=workflow_id)
        ids.append((await run_until(api, started.json["run_id"], lambda r: r["status"] == "success"))["run_id"])
    reply = await api.get("/runs/{run_id}/diff/{other_run_id}", run_id=ids[0], other_run_id=ids[1])
    assert reply.code == 200, reply.json
    rows = {r["node"]: r for r in reply.json["nodes"]}
    assert rows["calc"]["output_changes"] == [{"path": "$.total", "change": "changed", "a": 2, "b": 6}]
    assert reply.json["first_divergence"]["node"] == "start"
    assert {"a", "b"} == set(reply.json["segments"]) and reply.json["segments"]["b"]
    missing = await api.get("/runs/{run_id}/diff/{other_run_id}", run_id=ids[0], other_run_id="run-" + uuid.uuid4().hex)
    assert missing.code == 404
