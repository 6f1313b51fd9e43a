"""The node catalogue: one spec per node type drives the catalogue and the docs."""

from pathlib import Path

from floworch_server import nodes
from floworch_server.nodes import docs

SPINE_TYPES = {
    "trigger.manual",
    "transform",
    "action.http",
    "control.if",
    "control.parallel",
    "control.delay",
    "control.approval",
    "test.fail",
}


def test_the_catalogue_lists_every_node_type_with_its_ports_and_schema():
    entries = {e["type"]: e for e in nodes.catalogue()}
    assert set(entries) >= SPINE_TYPES
    for entry in entries.values():
        assert entry["category"] in ("Triggers", "AI", "Actions", "Control Flow")
        assert entry["config_schema"]["type"] == "object"
        assert entry["kind"] in ("trigger", "activity", "control")
    assert [p["name"] for p in entries["control.approval"]["outputs"]] == ["approved", "rejected", "timeout"]
    assert entries["trigger.manual"]["inputs"] == []


def test_ports_named_by_the_config_follow_the_catalogues_rule():
    """The canvas names a switch's ports from its catalogue entry alone: the rule there gives the
    ports the engine gives (valid cases, an item without a port skipped, default last)."""
    entry = {e["type"]: e for e in nodes.catalogue()}["control.switch"]
    assert entry["dynamic_outputs"] == {"field": "cases", "key": "port", "then": ["default"]}
    config = {"cases": [{"port": "large", "when": "true"}, {"when": "false"}, {"port": "small", "when": "true"}]}
    assert [p.name for p in nodes.get("control.switch").outputs_for(config)] == ["large", "small", "default"]
    assert [p.name for p in nodes.get("control.switch").outputs_for({"cases": "not a list"})] == ["default"]
    assert {e["type"]: e for e in nodes.catalogue()}["transform"]["dynamic_outputs"] is None


def test_the_node_reference_page_is_generated_from_the_specs():
    committed = (Path(__file__).parents[1] / "docs" / "nodes.md").read_text()
    assert committed == docs.render(), (
        "docs/nodes.md is stale: run python -m floworch_server.nodes.docs > docs/nodes.md"
    )
