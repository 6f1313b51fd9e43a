"""Compensation (saga) and reused outputs, end to end on the real embedded Temporal dev server.

A booking flow reserves a flight, then a hotel, then charges the card. When the charge fails for
good, the hotel and then the flight are cancelled, each exactly once - counted at a local HTTP
receiver that, like a real booking API, applies each Idempotency-Key once - also when the
worker is killed with SIGKILL in the middle of compensating."""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import finished, flow_doc, nodes_by_id, wait_until
from floworch_server.errors import BadRequest
from floworch_server.problems import FlowInvalid
from floworch_server.validate import validate_data
from support.receiver import send_json, serve

TRIGGER = {"id": "start", "type": "trigger.manual"}


class BookingAPI:
    """A local booking API. Every delivery is recorded; an Idempotency-Key seen before gets the
    first answer again without a second effect. ``hold`` makes the first delivery to that path
    apply its effect, then hang (its answer is lost) until ``release``; ``refuse`` answers 409."""

    def __init__(self, hold: str | None = None, refuse: tuple[str, ...] = ()):
        self.deliveries: list[dict] = []
        self.effects: list[dict] = []  # one per idempotency key, in the order they were applied
        self.answers: dict[str, dict] = {}
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                key = self.headers.get("Idempotency-Key")
                with api.lock:
                    api.deliveries.append(
                        {"path": self.path, "key": key, "attempt": self.headers.get("X-Floworch-Attempt"), "body": body}
                    )
                    if self.path in refuse:
                        answer, status = {"error": "cannot cancel"}, 409
                    elif key in api.answers:
                        answer, status = api.answers[key], 200
                    else:
                        kind = self.path.strip("/").replace("/", " ")
                        api.effects.append({"what": kind, "key": key, "body": body})
                        answer, status = {"id": f"{kind.split()[0][0].upper()}{len(api.effects)}", "done": kind}, 200
                        api.answers[key] = answer
                    hold_this = self.path == hold and not api.held.is_set()
                if hold_this:
                    api.held.set()
                    api.release.wait(60)  # the worker that sent it dies meanwhile
                    return
                send_json(self, status, answer)

            def log_message(self, *args):
                pass

        self.server, self.url = serve(Handler)

    def effects_of(self, what: str) -> list[dict]:
        return [e for e in self.effects if e["what"] == what]

    def close(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def api():
    made: list[BookingAPI] = []

    def make(**kwargs) -> BookingAPI:
        made.append(BookingAPI(**kwargs))
        return made[-1]

    yield make
    for a in made:
        a.close()


def post(node_id: str, url: str, json_body: dict, **extra) -> dict:
    return {"id": node_id, "type": "action.http", "config": {"method": "POST", "url": url, "json": json_body}, **extra}


def booking(api: BookingAPI, *, charge_fails: bool = True) -> tuple[list, list]:
    """Reserve a flight, reserve a hotel, charge the card; each reservation names its undo."""
    undo_policy = {"heartbeat_seconds": 2, "retry": {"initial_interval_seconds": 0.5}}
    nodes = [
        TRIGGER,
        post("flight", f"{api.url}/flights/reserve", {"guest": "{{ input.guest }}"}, compensate="cancel_flight"),
        post(
            "hotel",
            f"{api.url}/hotels/reserve",
            {"guest": "{{ input.guest }}", "flight": "{{ nodes.flight.output.body.id }}"},
            compensate="cancel_hotel",
        ),
        {
            "id": "charge",
            "type": "test.fail",
            "config": {"fail_times": 1 if charge_fails else 0, "permanent": True, "message": "card declined"},
        },
        post(
            "cancel_hotel",
            f"{api.url}/hotels/cancel",
            {"reservation": "{{ nodes.hotel.output.body.id }}", "guest": "{{ input.guest }}"},
            policy=undo_policy,
        ),
        post(
            "cancel_flight",
            f"{api.url}/flights/cancel",
            {"reservation": "{{ nodes.flight.output.body.id }}"},
            policy=undo_policy,
        ),
    ]
    return nodes, [("start", "flight"), ("flight", "hotel"), ("hotel", "charge")]


def compensation_segments(segments: list[dict]) -> list[dict]:
    return [s for s in segments if s["kind"] == "compensation"]


# ---------------------------------------------------------------------- the saga
async def test_when_the_charge_fails_the_hotel_then_the_flight_are_cancelled_once_each(service, published, api):
    bookings = api()
    flow = await published(*booking(bookings))
    run_id = (await service.start_run(flow, input={"guest": "Ada"}, by="t"))["run_id"]
    run = await finished(service, run_id)

    assert run["status"] == "failed"
    # The run fails with the charge's error, and says which compensations ran.
    assert "node 'charge' (test.fail) failed: card declined" in run["error"]
    assert run["error"].endswith("; compensated: cancel_hotel (for 'hotel'), cancel_flight (for 'flight')")
    # Undone in reverse order, each exactly once, with what the reservation returned.
    assert [e["what"] for e in bookings.effects] == [
        "flights reserve",
        "hotels reserve",
        "hotels cancel",
        "flights cancel",
    ]
    assert bookings.effects[2]["body"] == {"reservation": "H2", "guest": "Ada"}
    assert bookings.effects[3]["body"] == {"reservation": "F1"}
    assert [d["key"] for d in bookings.deliveries[2:]] == [f"{run_id}:cancel_hotel", f"{run_id}:cancel_flight"]

    nodes = nodes_by_id(run)
    assert {n: nodes[n]["status"] for n in ("start", "flight", "hotel", "charge")} == {
        "start": "success", "flight": "compensated", "hotel": "compensated", "charge": "failed",
    }  # fmt: skip
    assert nodes["hotel"]["detail"]["compensation"] == "cancel_hotel"
    assert nodes["flight"]["detail"]["compensation"] == "cancel_flight"
    assert nodes["hotel"]["attempts"] == 1 and nodes["hotel"]["error"] is None
    assert (nodes["cancel_hotel"]["status"], nodes["cancel_flight"]["status"]) == ("success", "success")

    segments = await service.trace(run_id)
    undo = compensation_segments(segments)
    assert [(s["node"], s["status"]) for s in undo] == [("hotel", "compensated"), ("flight", "compensated")]
    assert undo[0]["ended"] <= undo[1]["started"]
    activities = [s["node"] for s in segments if s["kind"] == "activity"]
    assert activities[-2:] == ["cancel_hotel", "cancel_flight"]


async def test_a_run_that_succeeds_runs_no_compensation(service, published, api):
    bookings = api()
    flow = await published(*booking(bookings, charge_fails=False))
    run = await finished(service, (await service.start_run(flow, input={"guest": "Ada"}, by="t"))["run_id"])

    assert run["status"] == "success", run.get("error")
    assert [e["what"] for e in bookings.effects] == ["flights reserve", "hotels reserve"]
    nodes = nodes_by_id(run)
    assert (nodes["flight"]["status"], nodes["hotel"]["status"]) == ("success", "success")
    assert (nodes["cancel_hotel"]["status"], nodes["cancel_flight"]["status"]) == ("idle", "idle")
    assert run["result"]["outputs"] == {"charge": {"attempt": 1, "output": None}}


async def test_a_compensation_that_fails_is_shown_and_the_others_still_run(service, published, api):
    bookings = api(refuse=("/hotels/cancel",))
    flow = await published(*booking(bookings))
    run_id = (await service.start_run(flow, input={"guest": "Ada"}, by="t"))["run_id"]
    run = await finished(service, run_id)

    assert run["status"] == "failed"
    assert run["error"].startswith("node 'charge' (test.fail) failed: card declined")
    assert (
        "; compensated: cancel_flight (for 'flight'); compensation failed: cancel_hotel (for 'hotel'): POST "
        in run["error"]
    )
    assert run["error"].endswith("/hotels/cancel answered 409 Conflict: " + '{"error": "cannot cancel"}')
    assert [e["what"] for e in bookings.effects] == ["flights reserve", "hotels reserve", "flights cancel"]
    nodes = nodes_by_id(run)
    assert nodes["hotel"]["status"] == "compensation_failed"
    assert nodes["hotel"]["error"].startswith("compensation 'cancel_hotel' failed: POST ")
    assert nodes["cancel_hotel"]["status"] == "failed"
    assert nodes["flight"]["status"] == "compensated"
    undo = compensation_segments(await service.trace(run_id))
    assert [(s["node"], s["status"]) for s in undo] == [("hotel", "compensation_failed"), ("flight", "compensated")]


# ---------------------------------------------------------------------- validation
def problems_of(nodes: list, edges: list) -> list[dict]:
    return [p.to_dict() for p in validate_data(flow_doc(nodes, edges))]


def test_the_booking_flow_is_valid_and_its_compensations_are_not_unreachable_steps(api):
    assert problems_of(*booking(api())) == []


def test_a_compensation_naming_an_unknown_node_is_refused_with_a_suggestion(api):
    nodes, edges = booking(api())
    nodes[1]["compensate"] = "cancel_flihgt"
    found = [p for p in problems_of(nodes, edges) if p["code"] == "unknown-compensation"]
    assert found == [
        {
            "code": "unknown-compensation",
            "message": "compensate names node 'cancel_flihgt', which does not exist",
            "node": "flight",
            "field": "compensate",
            "hint": "did you mean 'cancel_flight'?",
            "location": "node 'flight', compensate",
        }
    ]


def test_a_compensation_that_edges_reach_is_refused(api):
    nodes, edges = booking(api())
    found = problems_of(nodes, [*edges, ("charge", "cancel_hotel")])
    assert [(p["code"], p["node"], p["field"]) for p in found] == [("compensation-reachable", "hotel", "compensate")]
    assert "'cancel_hotel' compensates 'hotel' but edges lead to it from the trigger" in found[0]["message"]
    assert found[0]["hint"] == "delete the edges into 'cancel_hotel': a compensation runs only when a later node fails"


def test_a_compensation_reading_a_downstream_nodes_output_is_refused(api):
    nodes, edges = booking(api())
    nodes[5]["config"]["json"] = {
        "reservation": "{{ nodes.flight.output.body.id }}",
        "paid": "{{ nodes.charge.output }}",
    }
    found = problems_of(nodes, edges)
    assert [(p["code"], p["node"], p["field"]) for p in found] == [
        ("compensation-reference", "cancel_flight", "config.json.paid")
    ]
    assert found[0]["message"].startswith("refers to node 'charge', which does not run before 'flight'")
    assert found[0]["hint"] == "a compensation reads the run input and the outputs of 'flight' and the nodes before it"


def test_a_compensation_may_read_the_input_and_the_compensated_node_and_what_ran_before_it(api):
    nodes, edges = booking(api())
    nodes[4]["config"]["json"] = {
        "hotel": "{{ nodes.hotel.output.body.id }}",
        "flight": "{{ nodes.flight.output.body.id }}",
        "guest": "{{ input.guest }}",
    }
    assert problems_of(nodes, edges) == []


def test_control_nodes_triggers_and_shared_compensations_are_refused(api):
    nodes, edges = booking(api())
    nodes += [{"id": "pause", "type": "control.delay", "config": {"seconds": 1}}]
    nodes[0] = {**nodes[0], "compensate": "cancel_flight"}
    nodes[2]["compensate"] = "cancel_flight"
    nodes[3]["compensate"] = "pause"
    found = {(p["code"], p["node"]): p["message"] for p in problems_of(nodes, edges)}
    assert found[("invalid-compensation", "start")] == "a trigger cannot be compensated: it only starts the run"
    assert found[("compensation-shared", "hotel")] == "'cancel_flight' already compensates 'flight'"
    assert (
        found[("invalid-compensation", "charge")]
        == "'pause' is a control node (control.delay); a compensation must be an activity node"
    )


async def test_publishing_a_flow_with_a_bad_compensation_is_refused_and_stores_no_version(service, api):
    nodes, edges = booking(api())
    nodes[1]["compensate"] = "nowhere"
    record = service.create_workflow(flow_doc(nodes, edges), by="t")
    with pytest.raises(FlowInvalid) as refused:
        await service.publish(record["id"], by="t")
    assert ("unknown-compensation", "flight", "compensate") in [
        (p.code, p.node, p.field) for p in refused.value.problems
    ]
    assert service.list_versions(record["id"]) == []


# ---------------------------------------------------------------------- reused outputs
RECORDED_FLIGHT = {"status": 200, "headers": {}, "body": {"id": "F-old", "done": "flights reserve"}, "url": "recorded"}


async def test_a_reused_node_is_not_called_and_its_recorded_output_flows_on(service, published, api):
    bookings = api()
    flow = await published(*booking(bookings, charge_fails=False))
    reuse = {"flight": {"output": RECORDED_FLIGHT, "from_run": "run-earlier"}}
    run_id = (await service.start_run(flow, input={"guest": "Ada"}, by="t", reuse=reuse))["run_id"]
    run = await finished(service, run_id)

    assert run["status"] == "success", run.get("error")
    assert [e["what"] for e in bookings.effects] == ["hotels reserve"]  # no second flight
    assert bookings.effects[0]["body"] == {"guest": "Ada", "flight": "F-old"}
    flight = nodes_by_id(run)["flight"]
    assert (flight["status"], flight["attempts"], flight["detail"]) == (
        "success",
        0,
        {"reused": True, "from_run": "run-earlier"},
    )
    [seg] = [s for s in await service.trace(run_id) if s["node"] == "flight"]
    assert (seg["kind"], seg["status"], seg["started"]) == ("reused", "success", seg["ended"])


async def test_a_reused_node_is_not_compensated_by_the_run_that_reused_it(service, published, api):
    bookings = api()
    flow = await published(*booking(bookings))
    reuse = {"flight": {"output": RECORDED_FLIGHT, "from_run": "run-earlier"}}
    run = await finished(
        service, (await service.start_run(flow, input={"guest": "Ada"}, by="t", reuse=reuse))["run_id"]
    )

    assert run["status"] == "failed"
    assert run["error"].endswith("; compensated: cancel_hotel (for 'hotel')")
    assert [e["what"] for e in bookings.effects] == ["hotels reserve", "hotels cancel"]
    nodes = nodes_by_id(run)
    assert (nodes["flight"]["status"], nodes["hotel"]["status"], nodes["cancel_flight"]["status"]) == (
        "success",
        "compensated",
        "idle",
    )


@pytest.mark.parametrize(
    "reuse, field, message",
    [
        ({"nope": {"output": 1, "from_run": "r"}}, "reuse.nope", "no node 'nope' in this flow's plan"),
        ({"cancel_hotel": {"output": 1, "from_run": "r"}}, "reuse.cancel_hotel", "'cancel_hotel' is a compensation"),
        ({"start": {"output": 1, "from_run": "r"}}, "reuse.start", "'start' is a trigger node"),
        ({"flight": {"from_run": "r"}}, "reuse.flight", "must be {"),
        ({"flight": {"output": 1}}, "reuse.flight", "must be {"),
        (["flight"], "reuse", "must be an object"),
    ],
)
async def test_bad_reuse_entries_are_refused_and_start_no_run(service, published, api, reuse, field, message):
    flow = await published(*booking(api()))
    with pytest.raises(BadRequest) as refused:
        await service.start_run(flow, input={"guest": "Ada"}, by="t", reuse=reuse)
    assert refused.value.field == field
    assert message in str(refused.value)
    assert service.store.list_runs(workflow_id=flow) == []


# ---------------------------------------------------------------------- durability
async def test_compensation_survives_a_worker_killed_mid_way_and_undoes_each_step_once(
    service, published, supervisor, api
):
    bookings = api(hold="/hotels/cancel")
    flow = await published(*booking(bookings))
    run_id = (await service.start_run(flow, input={"guest": "Ada"}, by="t"))["run_id"]
    assert await wait_until(lambda: _value(bookings.held.is_set()), timeout=60)

    # The hotel's cancellation is being delivered: the worker dies with it in flight.
    running = await service.get_run(run_id)
    assert nodes_by_id(running)["hotel"]["status"] == "compensating"
    [old_pid] = supervisor.worker_pids()
    restarts = supervisor.restarts
    os.kill(old_pid, signal.SIGKILL)
    await wait_until(
        lambda: _value(supervisor.restarts > restarts and supervisor.worker_pids()[0] not in (None, old_pid)),
        timeout=60,
    )
    bookings.release.set()

    run = await finished(service, run_id, timeout=120)
    assert run["status"] == "failed"
    assert run["error"].endswith("; compensated: cancel_hotel (for 'hotel'), cancel_flight (for 'flight')")
    # Delivered twice (the first answer was lost with the worker), applied once; then the flight.
    cancels = [(d["path"], d["key"], d["attempt"]) for d in bookings.deliveries if d["path"].endswith("/cancel")]
    assert cancels == [
        ("/hotels/cancel", f"{run_id}:cancel_hotel", "1"),
        ("/hotels/cancel", f"{run_id}:cancel_hotel", "2"),
        ("/flights/cancel", f"{run_id}:cancel_flight", "1"),
    ]
    assert [e["what"] for e in bookings.effects] == [
        "flights reserve",
        "hotels reserve",
        "hotels cancel",
        "flights cancel",
    ]
    nodes = nodes_by_id(run)
    assert (nodes["hotel"]["status"], nodes["flight"]["status"]) == ("compensated", "compensated")
    assert nodes["cancel_hotel"]["attempts"] == 2
    undo = compensation_segments(await service.trace(run_id))
    assert [(s["node"], s["status"]) for s in undo] == [("hotel", "compensated"), ("flight", "compensated")]


async def _value(value):
    return value
