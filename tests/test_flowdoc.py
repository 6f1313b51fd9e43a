"""The `.flow` document on disk: loading, stable saving and structural problems.

A saved file has sorted keys, two-space indentation and a trailing newline, and numbers keep
their kind (an int stays an int), so loading and saving again changes no byte. Saving replaces
the file in one step: nobody ever sees half a file. Structural problems name the node or edge
they concern and the path of the field inside it.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from floworch_server.flowdoc import FlowDocument, dumps, load, parse_data, parse_text, save
from floworch_server.problems import FlowInvalid

VALID = Path(__file__).parent / "data" / "valid"
VALID_FLOWS = sorted(p.name for p in VALID.glob("*.flow"))


def document(**overrides) -> dict:
    data = {
        "version": 1,
        "meta": {"id": "0b6f4a7e-2d0c-4f0e-9b1e-3c2b1a0f9e8d", "name": "numbers"},
        "nodes": [
            {
                "id": "start",
                "type": "trigger.manual",
                "label": "Start",
                "position": {"x": 0, "y": -40},
                "config": {"example": {"count": 3, "ratio": 0.5, "whole_float": 2.0, "big": 2**53 + 1}},
            },
            {
                "id": "wait",
                "type": "control.delay",
                "label": "Wait",
                "position": {"x": 250.5, "y": 1e-3},
                "config": {"seconds": 5},
                "policy": {"retry": {"max_attempts": 4, "backoff": 1.5}, "timeout_seconds": 30},
            },
        ],
        "edges": [{"id": "e1", "source": "start", "target": "wait"}],
    }
    data.update(overrides)
    return data


def structural(data) -> list[tuple]:
    _, problems = parse_data(data)
    return [(p.code, p.node, p.edge, p.field, p.message) for p in problems]


# ------------------------------------------------------------------ stable text
@pytest.mark.parametrize("name", VALID_FLOWS)
def test_loading_and_saving_a_saved_flow_changes_no_byte(tmp_path, name):
    original = (VALID / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(original)
    save(load(path), path)
    assert path.read_bytes() == original


def test_ints_stay_ints_and_floats_stay_floats():
    text = FlowDocument.model_validate(document()).dumps()
    saved = json.loads(text)
    start, wait = saved["nodes"]
    assert start["config"]["example"] == {"count": 3, "ratio": 0.5, "whole_float": 2.0, "big": 2**53 + 1}
    assert {k: type(v) for k, v in start["config"]["example"].items()} == {
        "count": int,
        "ratio": float,
        "whole_float": float,
        "big": int,
    }
    assert '"count": 3,' in text and '"whole_float": 2.0' in text and '"big": 9007199254740993' in text
    assert wait["position"] == {"x": 250.5, "y": 0.001} and start["position"] == {"x": 0, "y": -40}
    assert '"x": 0,' in text and '"y": -40' in text
    assert wait["config"] == {"seconds": 5} and '"seconds": 5\n' in text


def test_ints_stay_ints_in_node_policies_too():
    data = document()
    data["nodes"][1]["policy"] = {
        "retry": {"max_attempts": 4, "initial_interval_seconds": 2, "backoff": 1.5, "max_interval_seconds": 60},
        "timeout_seconds": 30,
        "heartbeat_seconds": 10,
    }
    text = FlowDocument.model_validate(data).dumps()
    assert json.loads(text)["nodes"][1]["policy"] == data["nodes"][1]["policy"]
    for written in (
        '"max_attempts": 4',
        '"initial_interval_seconds": 2,',
        '"backoff": 1.5',
        '"max_interval_seconds": 60',
        '"timeout_seconds": 30',
        '"heartbeat_seconds": 10',
    ):
        assert written in text


def test_the_saved_text_has_sorted_keys_two_space_indent_and_a_final_newline():
    text = FlowDocument.model_validate(document()).dumps()
    assert text == dumps(json.loads(text))
    assert text.startswith('{\n  "edges": [\n    {\n      "id": "e1",\n')
    assert text.endswith('\n  ],\n  "version": 1\n}\n')

    def keys_sorted(value) -> bool:
        if isinstance(value, dict):
            return list(value) == sorted(value) and all(keys_sorted(v) for v in value.values())
        if isinstance(value, list):
            return all(keys_sorted(v) for v in value)
        return True

    assert keys_sorted(json.loads(text, object_pairs_hook=dict))


def test_text_outside_ascii_is_kept_as_written():
    doc = FlowDocument.model_validate(document(meta={"id": "x", "name": "Grüße – 東京"}))
    assert '"name": "Grüße – 東京"' in doc.dumps()


def test_a_hand_written_file_is_saved_in_stable_form_once_and_then_never_changes(tmp_path):
    path = tmp_path / "hand.flow"
    data = document()
    path.write_text(
        json.dumps({"version": 1, "nodes": data["nodes"], "edges": data["edges"], "meta": data["meta"]}, indent=4)
    )
    save(load(path), path)
    first = path.read_bytes()
    assert first.decode() == dumps(json.loads(first))
    save(load(path), path)
    assert path.read_bytes() == first


def test_a_saved_flow_loads_back_to_an_equal_document(tmp_path):
    doc = FlowDocument.model_validate(document())
    path = tmp_path / "numbers.flow"
    save(doc, path)
    assert load(path) == doc
    assert load(path).to_data() == doc.to_data()


def test_a_new_document_has_an_id_a_name_and_the_current_version():
    doc = FlowDocument.new("orders", description="Order intake")
    assert doc.version == 1 and doc.name == "orders" and doc.meta["description"] == "Order intake"
    assert len(doc.id) == 36 and doc.id != FlowDocument.new("orders").id
    assert parse_data(json.loads(doc.dumps())) == (doc, [])


# ------------------------------------------------------------------ atomic saving
class DiskFull:
    """Files opened for writing take half of what they are given, then fail like a full disk."""

    def __init__(self, real_open):
        self.real_open = real_open

    def __call__(self, file, mode="r", *args, **kwargs):
        handle = self.real_open(file, mode, *args, **kwargs)
        if not any(m in mode for m in "wax+"):
            return handle
        real_write = handle.write

        def write(data):
            real_write(data[: len(data) // 2])
            handle.flush()
            raise OSError(28, "No space left on device")

        handle.write = write
        return handle


def test_a_save_that_fails_halfway_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "numbers.flow"
    doc = FlowDocument.model_validate(document())
    save(doc, path)
    before = path.read_bytes()
    changed = FlowDocument.model_validate(document(meta={"id": "x", "name": "renamed"}))
    monkeypatch.setattr(io, "open", DiskFull(io.open))
    monkeypatch.setattr("builtins.open", DiskFull(open))
    with pytest.raises(OSError):
        save(changed, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load(path) == doc


def test_a_save_that_fails_halfway_leaves_no_partial_file_behind(tmp_path, monkeypatch):
    path = tmp_path / "numbers.flow"
    save(FlowDocument.model_validate(document()), path)
    monkeypatch.setattr(io, "open", DiskFull(io.open))
    monkeypatch.setattr("builtins.open", DiskFull(open))
    with pytest.raises(OSError):
        save(FlowDocument.model_validate(document(meta={"id": "x", "name": "renamed"})), path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["numbers.flow"]


def test_readers_never_see_a_partly_written_file(tmp_path):
    path = tmp_path / "big.flow"
    docs = [FlowDocument.model_validate(document(meta={"id": "x", "name": n, "notes": [n * 50] * 2000})) for n in "ab"]
    texts = {doc.dumps() for doc in docs}
    save(docs[0], path)
    seen_partial: list[int] = []
    done = threading.Event()

    def read():
        while not done.is_set():
            text = path.read_text(encoding="utf-8")
            if text not in texts:
                seen_partial.append(len(text))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(100):
            save(docs[i % 2], path)
    finally:
        done.set()
        reader.join()
    assert seen_partial == []


def test_two_saves_of_the_same_file_at_once_both_succeed_and_leave_one_whole_document(tmp_path):
    # e.g. two kernels editing the same .flow file with no Jupyter server to share a room.
    path = tmp_path / "shared.flow"
    docs = [FlowDocument.model_validate(document(meta={"id": "x", "name": n, "notes": [n * 50] * 2000})) for n in "ab"]
    texts = {doc.dumps() for doc in docs}
    save(docs[0], path)
    errors: list[str] = []
    seen_partial: list[int] = []
    done = threading.Event()

    def write(doc):
        for _ in range(50):
            try:
                save(doc, path)
            except Exception as exc:  # noqa: BLE001 - every failure is collected and asserted on
                errors.append(repr(exc))

    def read():
        while not done.is_set():
            text = path.read_text(encoding="utf-8")
            if text not in texts:
                seen_partial.append(len(text))

    threads = [threading.Thread(target=write, args=(doc,)) for doc in docs]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    assert errors == []
    assert seen_partial == []
    assert path.read_text(encoding="utf-8") in texts
    assert [p.name for p in tmp_path.iterdir()] == ["shared.flow"]


# ------------------------------------------------------------------ loading and structural problems
def test_loading_a_broken_file_raises_with_the_file_name_and_every_problem(tmp_path):
    path = tmp_path / "broken.flow"
    path.write_text(json.dumps(document(version=2, edges=[{"id": "e1", "source": "start"}])))
    with pytest.raises(FlowInvalid) as refused:
        load(path)
    assert refused.value.source == str(path)
    assert [(p.code, p.edge, p.field, p.message) for p in refused.value.problems] == [
        ("invalid-document", "e1", None, "'target' is a required property"),
        ("invalid-document", None, "version", "unsupported format version 2; this FlowOrchestrator reads version 1"),
    ]
    assert str(refused.value).startswith(
        f"{path}: 2 problem(s) in the flow:\n  - edge 'e1': 'target' is a required property"
    )


def test_invalid_json_is_reported_with_line_and_column():
    (problem,) = parse_text('{\n  "version": 1,\n  "nodes": [],\n  "edges": [],\n}\n')[1]
    assert (problem.code, problem.line, problem.message) == (
        "invalid-json",
        5,
        "not valid JSON: Expecting property name enclosed in double quotes at column 1",
    )
    assert problem.location == "line 5"


def test_a_document_that_is_not_an_object_is_refused():
    assert structural([]) == [("invalid-document", None, None, None, "[] is not of type 'object'")]


def test_schema_problems_name_the_node_or_edge_and_the_field_path_inside_it():
    data = document()
    data["nodes"][0]["position"]["x"] = "left"
    data["nodes"][1]["policy"] = {"retry": {"max_attempts": -1}, "timeout_seconds": 0}
    data["nodes"].append({"id": "3rd", "type": "transform"})
    data["edges"][0]["sourceHandle"] = 5
    data["meta"]["name"] = 7
    assert structural(data) == [
        ("invalid-document", None, "e1", "sourceHandle", "5 is not of type 'string', 'null'"),
        ("invalid-document", None, None, "meta.name", "7 is not of type 'string'"),
        ("invalid-document", "start", None, "position.x", "'left' is not of type 'number'"),
        ("invalid-document", "wait", None, "policy.retry.max_attempts", "-1 is less than the minimum of 0"),
        ("invalid-document", "wait", None, "policy.timeout_seconds", "0 is less than or equal to the minimum of 0"),
        (
            "invalid-document",
            "3rd",
            None,
            "id",
            "'3rd' is not a valid id: use letters, digits, '_' or '-', starting with a letter or '_'",
        ),
    ]


def test_a_node_without_an_id_is_located_by_its_index():
    data = document()
    data["nodes"].append({"type": "transform", "config": {"output": 1}})
    assert structural(data) == [("invalid-document", None, None, "nodes[2]", "'id' is a required property")]


def test_unknown_fields_are_named():
    data = document(colour="red")
    data["nodes"][1]["comment"] = "why"
    data["nodes"][0]["position"]["z"] = 1
    assert structural(data) == [
        ("invalid-document", None, None, None, "unknown field(s) not allowed: ('colour' was unexpected)"),
        ("invalid-document", "start", None, "position", "unknown field(s) not allowed: ('z' was unexpected)"),
        ("invalid-document", "wait", None, None, "unknown field(s) not allowed: ('comment' was unexpected)"),
    ]


def test_run_status_is_not_part_of_the_document():
    data = document()
    data["nodes"][1]["status"] = "running"
    assert structural(data) == [
        ("invalid-document", "wait", None, None, "unknown field(s) not allowed: ('status' was unexpected)")
    ]
