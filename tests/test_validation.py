"""Validation of `.flow` documents: every problem at once, each naming its node or edge, its
field and what is wrong; and nothing invalid is compiled, published or run.

The corpus in tests/data/broken holds one mistake per file (or a deliberate set of them);
tests/data/broken/expected.json lists, per file, exactly the problems that must be reported.
The flows in tests/data/valid are small, correct examples of each control-flow feature.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from floworch_server import nodes
from floworch_server.errors import BadRequest
from floworch_server.flowdoc import FlowDocument, parse_data, parse_text
from floworch_server.plan import compile_plan
from floworch_server.problems import FlowInvalid, Problem
from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.store import Store
from floworch_server.validate import validate, validate_data

DATA = Path(__file__).parent / "data"
BROKEN = DATA / "broken"
VALID = DATA / "valid"

EXPECTED: dict[str, list[dict]] = json.loads((BROKEN / "expected.json").read_text(encoding="utf-8"))
CORPUS = sorted(p.name for p in BROKEN.glob("*.flow"))
VALID_FLOWS = sorted(p.name for p in VALID.glob("*.flow"))
REPORTED_KEYS = ("code", "node", "edge", "field", "line", "message")


def text_of(name: str) -> str:
    return (BROKEN / name).read_text(encoding="utf-8")


def is_json(name: str) -> bool:
    try:
        json.loads(text_of(name))
    except json.JSONDecodeError:
        return False
    return True


def parses(name: str) -> bool:
    return parse_text(text_of(name))[0] is not None


JSON_CORPUS = [n for n in CORPUS if is_json(n)]
PARSED_CORPUS = [n for n in CORPUS if parses(n)]


def problems_in(text: str) -> list[Problem]:
    """What the product reports for a .flow file: parse it, then validate the document."""
    doc, problems = parse_text(text)
    return problems if doc is None else validate(doc)


def reported(problems: list[Problem]) -> list[dict]:
    return [{k: getattr(p, k) for k in REPORTED_KEYS if getattr(p, k) is not None} for p in problems]


def load_valid(name: str) -> FlowDocument:
    doc, problems = parse_text((VALID / name).read_text(encoding="utf-8"))
    assert problems == [] and doc is not None
    return doc


# ------------------------------------------------------------------ the broken corpus
def test_the_corpus_covers_every_listed_mistake_and_lists_every_file():
    assert len(CORPUS) >= 32
    assert sorted(EXPECTED) == CORPUS
    assert all(EXPECTED[name] for name in CORPUS), "every broken file has at least one problem"


@pytest.mark.parametrize("name", CORPUS)
def test_a_broken_flow_reports_exactly_its_problems(name):
    text = text_of(name)
    assert reported(problems_in(text)) == EXPECTED[name]
    if is_json(name):
        # The same problems when the document arrives already decoded (REST API, kernel).
        assert reported(validate_data(json.loads(text))) == EXPECTED[name]


@pytest.mark.parametrize("name", PARSED_CORPUS)
def test_compiling_a_broken_flow_is_refused_with_every_problem(name):
    doc, _ = parse_text(text_of(name))
    with pytest.raises(FlowInvalid) as refused:
        compile_plan(doc)
    assert refused.value.problems == validate(doc)
    assert refused.value.source == doc.name
    assert f"{len(refused.value.problems)} problem(s) in the flow" in str(refused.value)


def test_invalid_json_is_reported_with_its_line():
    (problem,) = problems_in(text_of("invalid-json.flow"))
    assert problem.code == "invalid-json"
    assert problem.line == 23
    assert str(problem).startswith("line 23: not valid JSON")


def test_an_unknown_node_type_suggests_the_closest_known_type():
    (problem,) = problems_in(text_of("unknown-node-type.flow"))
    assert problem.hint == "did you mean 'action.http'?"


def test_a_reference_to_a_missing_node_suggests_the_closest_node():
    (problem,) = problems_in(text_of("reference-unknown-node.flow"))
    assert problem.hint == "did you mean 'fetch'?"


def test_unknown_config_fields_are_reported_with_the_fields_the_node_accepts():
    (problem,) = problems_in(text_of("config-unknown-field.flow"))
    accepted = sorted(nodes.get("action.http").config_schema["properties"])
    assert "method" in accepted and "verb" not in accepted
    assert problem.hint == "action.http accepts: " + ", ".join(accepted)


def test_a_branch_port_left_unnamed_lists_the_ports_to_choose_from():
    (problem,) = problems_in(text_of("several-output-ports-no-handle.flow"))
    assert problem.hint == "set sourceHandle to one of: true, false"


def test_hints_only_name_node_types_that_exist():
    known = {spec.type for spec in nodes.all_specs()}
    wrong = set()
    for name in CORPUS:
        for problem in problems_in(text_of(name)):
            named = set(re.findall(r"\b(?:trigger|control|action)\.[a-z_]+", problem.hint or ""))
            if not named <= known:
                wrong.add(f"{problem.code}: {problem.hint}")
    assert sorted(wrong) == [], "these hints send the user to node types that do not exist"


def test_a_problem_reads_as_where_what_and_how_to_fix_it():
    problem = problems_in(text_of("config-enum.flow"))[0]
    assert problem.location == "node 'fetch', config.method"
    assert str(problem) == (
        "node 'fetch', config.method: 'FETCH' is not one of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'] "
        "(fix config.method to match the action.http schema)"
    )
    assert problem.to_dict()["location"] == "node 'fetch', config.method"


def test_config_holding_a_reference_is_checked_when_the_node_runs_not_before():
    doc = json.loads((VALID / "hello.flow").read_text(encoding="utf-8"))
    doc["nodes"].append(
        {"id": "fetch", "type": "action.http", "config": {"url": "{{ input.url }}", "method": "{{ input.method }}"}}
    )
    doc["edges"].append({"id": "e2", "source": "greet", "target": "fetch"})
    assert validate_data(doc) == []


# ------------------------------------------------------------------ nothing invalid reaches Temporal
class TemporalMustNotBeCalled:
    """Stands in for the Temporal client: any use of it is a failure."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        self.calls.append(name)
        raise AssertionError(f"an invalid flow reached Temporal (client.{name})")


async def settled(result):
    """The value of a service call, whether the call is synchronous or a coroutine."""
    return await result if inspect.isawaitable(result) else result


@pytest.fixture(scope="module")
def offline_service(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("offline-service")
    store = Store(f"sqlite:///{data_dir / 'floworch.db'}")
    service = FlowService(Settings.from_env(data_dir=str(data_dir)), TemporalMustNotBeCalled(), store)
    yield service
    store.close()


@pytest.mark.parametrize("name", JSON_CORPUS)
async def test_a_broken_flow_can_be_neither_published_nor_run(offline_service, name):
    data = json.loads(text_of(name))
    if name not in PARSED_CORPUS:
        # Not even a .flow document: it cannot be stored as a workflow in the first place.
        with pytest.raises(BadRequest):
            offline_service.create_workflow(data, by="tester")
        return
    # A draft may be invalid while it is being edited; it can only not go further.
    workflow = offline_service.create_workflow(data, by="tester")
    with pytest.raises(FlowInvalid):
        await settled(offline_service.publish(workflow["id"], by="tester"))
    with pytest.raises(FlowInvalid):
        await offline_service.start_run(workflow["id"], version="draft", input={}, by="tester")
    assert offline_service.list_versions(workflow["id"]) == []
    assert offline_service.client.calls == []


# ------------------------------------------------------------------ valid flows and their plans
def test_the_valid_examples_cover_each_control_flow_feature():
    assert VALID_FLOWS == ["approval-timeout.flow", "delay.flow", "hello.flow", "if-else.flow", "parallel-join.flow"]


@pytest.mark.parametrize("name", VALID_FLOWS)
def test_a_valid_flow_has_no_problems(name):
    text = (VALID / name).read_text(encoding="utf-8")
    assert problems_in(text) == []
    assert validate_data(json.loads(text)) == []


@pytest.mark.parametrize("name", VALID_FLOWS)
def test_a_valid_flow_compiles_to_a_plan_with_every_node_and_edge(name):
    doc = load_valid(name)
    plan = compile_plan(doc)
    assert re.fullmatch(r"[0-9a-f]{64}", plan.hash)
    assert plan.flow_id == doc.id
    assert plan.triggers == ["start"]
    assert sorted(plan.data["nodes"]) == sorted(n.id for n in doc.nodes)
    assert len(plan.data["edges"]) == len(doc.edges)
    assert sorted(plan.data["order"]) == sorted(n.id for n in doc.nodes)
    assert plan.data["order"][0] == "start"


def test_the_plan_names_the_port_every_edge_leaves_by():
    plan = compile_plan(load_valid("approval-timeout.flow"))
    assert [(e["source"], e["port"], e["target"]) for e in plan.data["edges"]] == [
        ("start", "out", "approve"),
        ("approve", "approved", "deploy"),
        ("approve", "rejected", "cancel"),
        ("approve", "timeout", "escalate"),
    ]


def test_the_plan_orders_a_join_after_all_of_its_branches():
    order = compile_plan(load_valid("parallel-join.flow")).data["order"]
    assert order.index("both") > max(order.index("left"), order.index("right"))
    assert order.index("fan") < min(order.index("left"), order.index("right"))


@pytest.mark.parametrize("name", VALID_FLOWS)
def test_the_plan_hash_is_the_same_on_every_compile(name):
    assert compile_plan(load_valid(name)).hash == compile_plan(load_valid(name)).hash


def test_the_plan_hash_is_the_same_in_another_process():
    script = (
        "import sys\n"
        "from floworch_server.flowdoc import load\n"
        "from floworch_server.plan import compile_plan\n"
        "for path in sys.argv[1:]:\n"
        "    print(compile_plan(load(path)).hash)\n"
    )
    paths = [str(VALID / name) for name in VALID_FLOWS]
    hashes = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script, *paths], env=env, capture_output=True, text=True, check=True
        )
        hashes.add(tuple(out.stdout.split()))
    assert hashes == {tuple(compile_plan(load_valid(name)).hash for name in VALID_FLOWS)}


def edited(name: str, change) -> FlowDocument:
    data = json.loads((VALID / name).read_text(encoding="utf-8"))
    change(data)
    doc, problems = parse_data(data)
    assert problems == [] and doc is not None
    return doc


@pytest.mark.parametrize("name", VALID_FLOWS)
def test_moving_nodes_and_renaming_labels_keeps_the_plan_hash(name):
    def rearrange(data):
        for i, node in enumerate(data["nodes"]):
            node["position"] = {"x": 1000 - 37 * i, "y": 12.5 * i}
            node["label"] = f"Step {i} (renamed)"

    assert compile_plan(edited(name, rearrange)).hash == compile_plan(load_valid(name)).hash


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda data: data["nodes"][1]["config"].update(output={"message": "Hi, {{ input.name }}!"}),
            id="config-value",
        ),
        pytest.param(lambda data: data["nodes"][0]["config"].pop("example"), id="config-field-removed"),
        pytest.param(lambda data: data["nodes"][1].update(policy={"retry": {"max_attempts": 7}}), id="retry-policy"),
        pytest.param(lambda data: data["nodes"][1].update(policy={"timeout_seconds": 5}), id="timeout"),
    ],
)
def test_changing_what_runs_changes_the_plan_hash(change):
    assert compile_plan(edited("hello.flow", change)).hash != compile_plan(load_valid("hello.flow")).hash


def test_a_plan_cannot_be_changed_after_compiling():
    plan = compile_plan(load_valid("hello.flow"))
    with pytest.raises(TypeError):
        plan.data["nodes"] = {}
    detached = plan.to_data()
    detached["nodes"]["greet"]["config"]["output"] = "changed"
    assert compile_plan(load_valid("hello.flow")).to_data() == plan.to_data() != detached
