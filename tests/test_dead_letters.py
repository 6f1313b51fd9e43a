"""Dead letters on the real Temporal dev server: a failed run is listed with what it failed at,
and retried from the start or from the failed node, once, by the service, REST and the kernel.

The flows call a small HTTP receiver in the test: ``/fetch`` answers 200, ``/charge`` answers
422 until the test "fixes" it, then 200. The receiver counts the calls it gets, so a test sees
which nodes a retry really called again.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from temporalio.service import RPCError, RPCStatusCode

import floworch as fo
from conftest import finished, flow_doc, nodes_by_id
from floworch_server.deadletters import retry_run_id
from floworch_server.errors import BadRequest, Conflict, NotFound
from support.receiver import Receiver
from support.rest import api, jp_server_config, run_until, runtime  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def http(node_id: str, url: str, **config) -> dict:
    return {
        "id": node_id,
        "type": "action.http",
        "config": {"method": "POST", "url": url, **config},
        "policy": {"retry": {"max_attempts": 2, "initial_interval_seconds": 0.1}},
    }


def checkout(base: str, charge_path: str = "/charge") -> tuple[list[dict], list]:
    """start -> fetch -> charge -> done: charge fails while the receiver is not fixed."""
    nodes = [
        {"id": "start", "type": "trigger.manual"},
        http("fetch", base + "/fetch", json={"customer": "{{ input.id }}"}),
        http("charge", base + charge_path, json={"customer": "{{ nodes.fetch.output.body.got.customer }}"}),
        {"id": "done", "type": "transform", "config": {"output": "{{ nodes.charge.output.body.got.customer }}"}},
    ]
    return nodes, [("start", "fetch"), ("fetch", "charge"), ("charge", "done")]


async def failed_checkout(service, receiver: Receiver, input=None) -> tuple[str, str]:
    """A published checkout flow of ``service``'s tenant and its run that failed at charge."""
    name = f"checkout-{uuid.uuid4().hex[:6]}"
    record = service.create_workflow(flow_doc(*checkout(receiver.base), name=name), by="tester")
    await service.publish(record["id"], by="tester")
    run = await finished(
        service, (await service.start_run(record["id"], input=input or {"id": 7}, by="tester"))["run_id"]
    )
    assert run["status"] == "failed", run
    return record["id"], run["run_id"]


async def started_with(service, run_id: str) -> dict:
    """The RunRequest a run was started with (the first event of its history)."""
    history = await service.handle(run_id).fetch_history()
    return json.loads(history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data)


async def not_in_temporal(service, run_id: str) -> bool:
    try:
        await service.handle(run_id).describe()
    except RPCError as exc:
        return exc.status == RPCStatusCode.NOT_FOUND
    return False


# ---------------------------------------------------------------------- the list
async def test_a_failed_run_is_a_dead_letter_with_its_input_failed_node_and_error_kind(service, receiver):
    flow, run_id = await failed_checkout(service, receiver, {"id": 7})
    letters = await service.dead_letters(flow)
    assert [letter["run_id"] for letter in letters] == [run_id]
    letter = letters[0]
    assert letter["workflow"] == service.get_workflow(flow)["name"] and letter["version"] == "1"
    assert (letter["node"], letter["node_type"], letter["error_kind"]) == ("charge", "action.http", "HttpStatus422")
    assert "answered 422" in letter["error"] and "card declined" in letter["error"]
    assert letter["input"] == {"id": 7} and letter["ended"] is not None and letter["retried_as"] is None

    # Filters by node type and error kind; a succeeded run of the same flow is no dead letter.
    assert [
        x["run_id"] for x in await service.dead_letters(flow, node_type="action.http", error_kind="HttpStatus422")
    ] == [run_id]
    assert await service.dead_letters(flow, node_type="transform") == []
    assert await service.dead_letters(flow, error_kind="HttpStatus503") == []
    receiver.fixed = True
    ok = await finished(service, (await service.start_run(flow, input={"id": 8}, by="tester"))["run_id"])
    assert ok["status"] == "success"
    assert [x["run_id"] for x in await service.dead_letters(flow)] == [run_id]
    assert run_id in [x["run_id"] for x in await service.dead_letters(node_type="action.http", limit=1000)]


async def test_the_error_kind_is_the_failing_nodes_own_failure_type(service, published):
    missing = f"crm-{uuid.uuid4().hex[:6]}"
    flows = {
        "IntegrationMissing": [
            {"id": "post", "type": "action.slack", "config": {"integration": missing, "channel": "#x", "text": "hi"}}
        ],
        "TestFailure": [
            {
                "id": "post",
                "type": "test.fail",
                "config": {"fail_times": 1, "permanent": True, "message": "ledger locked"},
            }
        ],
    }
    for kind, nodes in flows.items():
        flow = await published([{"id": "start", "type": "trigger.manual"}, *nodes], [("start", "post")])
        run = await finished(service, (await service.start_run(flow, by="tester"))["run_id"])
        [letter] = await service.dead_letters(flow)
        assert (letter["run_id"], letter["node"], letter["node_type"], letter["error_kind"]) == (
            run["run_id"],
            "post",
            nodes[0]["type"],
            kind,
        )


# ---------------------------------------------------------------------- retrying
async def test_retry_from_the_start_runs_the_whole_flow_again_with_the_same_input(service, receiver):
    flow, old = await failed_checkout(service, receiver, {"id": 7})
    receiver.fixed = True  # the cause is fixed: the card is accepted now
    [retried] = await service.retry_runs([old], mode="start", by="tester")
    assert (retried["run_id"], retried["mode"], retried["version"], retried["reused"]) == (old, "start", "1", [])
    new = await finished(service, retried["retry_run_id"])
    assert new["status"] == "success" and new["result"]["outputs"] == {"done": 7}
    assert (new["input"], new["trigger"], new["search_attributes"]["retry_of"]) == ({"id": 7}, "retry", old)
    assert receiver.counts() == {"/fetch": 2, "/charge": 2}

    # The dead letter left the list; with the retried ones, it names the run that retried it.
    assert await service.dead_letters(flow) == []
    [letter] = await service.dead_letters(flow, include_retried=True)
    assert (letter["run_id"], letter["retried_as"], letter["retry_mode"], letter["retry_status"]) == (
        old,
        new["run_id"],
        "start",
        "success",
    )
    [entry] = service.store.list_audit(action="run.retry", target=old)
    assert entry["actor"] == "tester" and entry["detail"]["run"] == new["run_id"]


async def test_resume_starts_a_run_with_the_recorded_outputs_before_the_failed_node(service, receiver):
    _flow, old = await failed_checkout(service, receiver)
    fetched = (await service.inspect(old, "fetch"))["calls"]["fetch"]["output"]
    receiver.fixed = True
    [retried] = await service.retry_runs([old], mode="resume", by="tester")
    assert retried["reused"] == ["fetch"] and retried["retry_run_id"] != old
    request = await started_with(service, retried["retry_run_id"])
    assert request["reuse"] == {"fetch": {"output": fetched, "from_run": old}}
    assert (
        request["input"] == {"id": 7} and request["run"]["retry_of"] == old and request["run"]["retry_mode"] == "resume"
    )
    await finished(service, retried["retry_run_id"])


async def test_resume_does_not_call_the_nodes_before_the_failed_node_again(service, receiver):
    flow, old = await failed_checkout(service, receiver)
    assert receiver.counts() == {"/fetch": 1, "/charge": 1}  # 422: declined, not worth another attempt
    receiver.fixed = True
    [retried] = await service.retry_runs([old], mode="resume", by="tester")
    new = await finished(service, retried["retry_run_id"])
    assert new["status"] == "success" and new["result"]["outputs"] == {"done": 7}
    # fetch was taken from the failed run, not called: only charge was called again.
    assert receiver.counts() == {"/fetch": 1, "/charge": 2}
    assert nodes_by_id(new)["fetch"]["status"] == "success"
    assert [x["run_id"] for x in await service.dead_letters(flow)] == []


async def test_resume_calls_a_node_again_whose_compensation_undid_it(service, published, receiver):
    nodes, edges = checkout(receiver.base)
    nodes[1] = {**nodes[1], "compensate": "refund"}  # fetch is undone when charge fails for good
    nodes.append(http("refund", receiver.base + "/refund"))
    flow = await published(nodes, edges)
    old = await finished(service, (await service.start_run(flow, input={"id": 7}, by="tester"))["run_id"])
    assert old["status"] == "failed" and nodes_by_id(old)["fetch"]["status"] == "compensated"
    receiver.fixed = True
    [retried] = await service.retry_runs([old["run_id"]], mode="resume", by="tester")
    assert retried["reused"] == []  # its recorded output describes something that was undone
    new = await finished(service, retried["retry_run_id"])
    assert new["status"] == "success"
    assert receiver.counts() == {"/fetch": 2, "/charge": 2, "/refund": 1}


async def test_retrying_the_same_dead_letter_again_gives_the_same_run_and_no_second_call(service, receiver):
    flow, old = await failed_checkout(service, receiver)
    receiver.fixed = True
    first = await service.retry_runs([old], mode="start", by="tester")
    again = await service.retry_runs([old, old], mode="start", by="tester")  # while the first may still run
    assert [r["retry_run_id"] for r in again] == [first[0]["retry_run_id"]]
    assert first[0]["retry_run_id"] == retry_run_id(flow, old, "start")
    await finished(service, first[0]["retry_run_id"])
    after = await service.retry_runs([old], mode="start", version="latest", by="tester")  # and once it has ended
    assert after[0]["retry_run_id"] == first[0]["retry_run_id"] and after[0]["status"] == "success"
    assert receiver.counts() == {"/fetch": 2, "/charge": 2}
    assert [r["run_id"] for r in await service.list_runs(flow, limit=10)].count(first[0]["retry_run_id"]) == 1


async def test_retry_on_the_latest_version_runs_the_newly_published_plan(service, receiver):
    flow, old = await failed_checkout(service, receiver)
    # Version 2 charges at an address that accepts; fetch is unchanged.
    fixed_doc = flow_doc(*checkout(receiver.base, "/charge-v2"))
    fixed_doc["meta"] = {**fixed_doc["meta"], "id": flow}
    service.save_draft(flow, fixed_doc, by="tester")
    await service.publish(flow, by="tester")

    [resumed] = await service.retry_runs([old], mode="resume", version="latest", by="tester")
    assert (resumed["version"], resumed["reused"]) == ("2", ["fetch"])
    [started] = await service.retry_runs([old], mode="start", version="latest", by="tester")
    for retried in (resumed, started):
        run = await finished(service, retried["retry_run_id"])
        assert (run["status"], run["version"]) == ("success", "2")
    assert receiver.counts()["/charge-v2"] == 2

    # "same" is still version 1, whose charge is still declined.
    [same] = await service.retry_runs([old], mode="start", version="same", by="tester")
    assert same["retry_run_id"] == started["retry_run_id"]  # one retry per mode: the first one stands


async def test_bad_retries_name_the_run_and_start_nothing(service, published, receiver):
    flow, old = await failed_checkout(service, receiver)
    for body, field in [
        ({"run_ids": []}, "run_ids"),
        ({"run_ids": old}, "run_ids"),
        ({"run_ids": [old], "mode": "rewind"}, "mode"),
        ({"run_ids": [old], "version": "3"}, "version"),
    ]:
        with pytest.raises(BadRequest) as caught:
            await service.retry_runs(
                body["run_ids"], mode=body.get("mode", "start"), version=body.get("version", "same"), by="tester"
            )
        assert caught.value.field == field, (body, caught.value)

    with pytest.raises(NotFound, match="no run with id 'run-nope'"):
        await service.retry_runs([old, "run-nope"], mode="start", by="tester")

    receiver.fixed = True
    done = await finished(service, (await service.start_run(flow, input={"id": 1}, by="tester"))["run_id"])
    with pytest.raises(Conflict, match=f"run '{done['run_id']}' is success, not failed"):
        await service.retry_runs([old, done["run_id"]], mode="resume", by="tester")

    waiting = await published(
        [{"id": "start", "type": "trigger.manual"}, {"id": "wait", "type": "control.delay", "config": {"seconds": 60}}],
        [("start", "wait")],
    )
    running = (await service.start_run(waiting, by="tester"))["run_id"]
    try:
        with pytest.raises(Conflict, match=rf"run '{running}' is running, not failed.*resume of a running run"):
            await service.retry_runs([running], mode="resume", by="tester")
    finally:
        await service.cancel(running, by="tester")

    # None of these started anything, not even the retry of the failed run named first.
    for mode in ("start", "resume"):
        assert await not_in_temporal(service, retry_run_id(flow, old, mode))
        assert service.store.get_run(retry_run_id(flow, old, mode)) is None
    assert [x["run_id"] for x in await service.dead_letters(flow)] == [old]
    assert service.store.list_audit(action="run.retry", target=old) == []


async def test_a_run_whose_history_is_gone_starts_again_but_cannot_resume(service, receiver):
    flow, real = await failed_checkout(service, receiver, {"id": 9})
    # A failed run whose history Temporal no longer keeps (its retention deleted it, which the dev
    # server does at a pace of its own): the store's record of it is all there is.
    old = f"run-gone-{uuid.uuid4().hex}"
    record = service.store.get_run(real)
    service.store.upsert_run(
        {**{k: v for k, v in record.items() if k not in ("updated_at", "timings_at")}, "run_id": old}
    )
    assert await not_in_temporal(service, old)

    letter = {x["run_id"]: x for x in await service.dead_letters(flow)}[old]
    assert (letter["run_id"], letter["history"], letter["node"], letter["input"]) == (old, False, None, {"id": 9})
    with pytest.raises(
        Conflict, match=rf"run '{old}': the inputs and outputs of its nodes are not recorded.*mode 'start'"
    ):
        await service.retry_runs([old], mode="resume", by="tester")
    assert await not_in_temporal(service, retry_run_id(flow, old, "resume"))

    receiver.fixed = True
    [retried] = await service.retry_runs([old], mode="start", by="tester")
    new = await finished(service, retried["retry_run_id"])
    assert (new["status"], new["input"], new["version"]) == ("success", {"id": 9}, "1")


async def test_another_tenant_sees_none_of_them_and_cannot_retry_them(service, receiver):
    other = service.for_tenant(f"other-{uuid.uuid4().hex[:6]}")
    flow, ours = await failed_checkout(service, receiver)
    their_flow, theirs = await failed_checkout(other, receiver)

    assert [x["run_id"] for x in await other.dead_letters(limit=1000)] == [theirs]
    assert theirs not in [x["run_id"] for x in await service.dead_letters(limit=1000)]
    assert await other.dead_letters(flow) == []
    with pytest.raises(NotFound, match=f"no run with id '{ours}'"):
        await other.retry_runs([ours], mode="start", by="mallory")
    with pytest.raises(NotFound, match=f"no run with id '{theirs}'"):
        await service.retry_runs([theirs], mode="resume", by="tester")
    assert await not_in_temporal(service, retry_run_id(flow, ours, "start"))
    assert await not_in_temporal(service, retry_run_id(their_flow, theirs, "resume"))

    # Their own retry is theirs: a run of their tenant, listed as retried for them only.
    receiver.fixed = True
    [retried] = await other.retry_runs([theirs], mode="start", by="olga")
    run = await finished(other, retried["retry_run_id"])
    assert (run["status"], run["tenant"]) == ("success", other.tenant)
    assert service.store.get_run(retried["retry_run_id"]) is None


# ---------------------------------------------------------------------- REST and the kernel
async def test_the_rest_api_lists_and_retries_dead_letters(api, service, receiver):
    flow, old = await failed_checkout(service, receiver, {"id": 5})
    listed = await api.get("/dead-letters", params={"workflow_id": flow})
    assert listed.code == 200 and [x["run_id"] for x in listed.json] == [old]
    letter = listed.json[0]
    assert (letter["node"], letter["node_type"], letter["error_kind"], letter["input"]) == (
        "charge",
        "action.http",
        "HttpStatus422",
        {"id": 5},
    )
    for params in ({"node_type": "transform"}, {"error_kind": "HttpStatus500"}):
        assert (await api.get("/dead-letters", params={"workflow_id": flow, **params})).json == []
    for params, field in [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"include_retried": "yes"}, "include_retried"),
    ]:
        reply = await api.get("/dead-letters", params=params)
        assert (reply.code, reply.json["field"]) == (400, field)

    for body, code, field in [
        ({}, 400, "run_ids"),
        ({"run_ids": []}, 400, "run_ids"),
        ({"run_ids": "run-x"}, 400, "run_ids"),
        ({"run_ids": [old], "mode": "later"}, 400, "mode"),
        ({"run_ids": [old], "version": 2}, 400, "version"),
    ]:
        reply = await api.post("/dead-letters/retry", body)
        assert (reply.code, reply.json["field"]) == (code, field), (body, reply.json)
    unknown = await api.post("/dead-letters/retry", {"run_ids": [old, "run-unknown"]})
    assert unknown.code == 404 and "run-unknown" in unknown.json["error"]
    assert await not_in_temporal(service, retry_run_id(flow, old, "start"))

    receiver.fixed = True
    retried = await api.post("/dead-letters/retry", {"run_ids": [old], "mode": "resume", "version": "same"})
    assert retried.code == 201 and retried.json[0]["run_id"] == old and retried.json[0]["reused"] == ["fetch"]
    new_id = retried.json[0]["retry_run_id"]
    again = await api.post("/dead-letters/retry", {"run_ids": [old], "mode": "resume"})
    assert again.code == 201 and again.json[0]["retry_run_id"] == new_id
    done = await run_until(api, new_id, lambda r: r["status"] in ("success", "failed"))
    assert done["status"] == "success"
    assert (await api.get("/dead-letters", params={"workflow_id": flow})).json == []
    [marked] = (await api.get("/dead-letters", params={"workflow_id": flow, "include_retried": "true"})).json
    assert (marked["retried_as"], marked["retry_mode"]) == (new_id, "resume")
    conflict = await api.post("/dead-letters/retry", {"run_ids": [new_id]})
    assert conflict.code == 409 and new_id in conflict.json["error"]


async def test_the_kernel_lists_dead_letters_as_a_frame_and_retries_them(service, receiver):
    flow, old = await failed_checkout(service, receiver, {"id": 3})
    # The kernel API blocks on its own loop thread, so it runs in a thread here.
    frame = await asyncio.to_thread(fo.dead_letters, flow)
    assert list(frame.columns[:9]) == [
        "run_id",
        "workflow",
        "version",
        "node",
        "node_type",
        "error_kind",
        "error",
        "input",
        "ended",
    ]
    assert frame.to_dict("records")[0] | {"error": None, "ended": None} == {
        "run_id": old, "workflow": service.get_workflow(flow)["name"], "version": "1", "node": "charge", "node_type": "action.http",
        "error_kind": "HttpStatus422", "error": None, "input": {"id": 3}, "ended": None, "workflow_id": flow, "retried_as": None,
    }  # fmt: skip
    assert str(frame["ended"].dtype).startswith("datetime64") and "card declined" in frame.loc[0, "error"]

    receiver.fixed = True
    [run] = await asyncio.to_thread(fo.retry, frame, mode="resume")
    assert isinstance(run, fo.Run) and run.record["retry_of"] == old and run.record["reused"] == ["fetch"]
    await asyncio.to_thread(run.wait, 60, False)
    assert run.status == "success"
    same = await asyncio.to_thread(lambda: fo.get_run(old).retry(mode="resume"))
    assert same.id == run.id
    assert (await asyncio.to_thread(fo.dead_letters, flow)).empty
