"""The node catalogue: one spec per node type drives the catalogue and the docs."""

from pathlib import Path

from floworch_server import nodes
from floworch_server.nodes import docs

SPINE_TYPES = {"trigger.manual", "transform", "action.http", "control.if", "control.parallel", "control.delay", "control.approval", "test.fail"}


def test_the_catalogue_lists_every_node_type_with_its_ports_and_schema():
    entries = {e["type"]: e for e in nodes.catalogue()}
    assert SPINE_TYPES <= set(entries)
    for entry in entries.values():
        assert entry["category"] in ("Triggers", "AI", "Actions", "Control Flow")
        assert entry["config_schema"]["type"] == "object"
        assert entry["kind"] in ("trigger", "activity", "control")
    assert [p["name"] for p in entries["control.approval"]["outputs"]] == ["approved", "rejected", "timeout"]
    assert entries["trigger.manual"]["inputs"] == []


def test_the_node_reference_page_is_generated_from_the_specs():
    committed = (Path(__file__).parents[1] / "docs" / "nodes.md").read_text()
    assert committed == docs.render(), "docs/nodes.md is stale: run python -m floworch_server.nodes.docs > docs/nodes.md"
