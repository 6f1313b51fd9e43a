"""The `.flow` document, format version 1: models, loading and stable saving.

A `.flow` file is JSON validated by `schema/flow-v1.schema.json`. Saving writes sorted keys
and two-space indentation so that the file diffs well and a load/save round trip is
byte-stable (integers stay integers).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from .problems import FlowInvalid, Problem

FORMAT_VERSION: Final = 1
SCHEMA_PATH = Path(__file__).parent / "schema" / "flow-v1.schema.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Position(_Model):
    x: int | float = 0
    y: int | float = 0


class RetrySettings(_Model):
    max_attempts: int | None = None
    initial_interval_seconds: int | float | None = None
    backoff: int | float | None = None
    max_interval_seconds: int | float | None = None
    non_retryable_errors: list[str] | None = None


class NodePolicy(_Model):
    retry: RetrySettings | None = None
    timeout_seconds: int | float | None = None
    heartbeat_seconds: int | float | None = None
    task_queue: str | None = None


class Node(_Model):
    id: str
    type: str
    label: str = ""
    position: Position = Field(default_factory=Position)
    config: dict[str, Any] = Field(default_factory=dict)
    policy: NodePolicy | None = None
    # The node that undoes this one when a later node fails for good (validate.py has the rules).
    compensate: str | None = None


class Edge(_Model):
    id: str
    source: str
    sourceHandle: str | None = None
    target: str
    targetHandle: str | None = None


class FlowDocument(_Model):
    version: Literal[1] = FORMAT_VERSION
    meta: dict[str, Any] = Field(default_factory=dict)
    nodes: list[Node] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)

    # -- convenience -------------------------------------------------------------------
    @classmethod
    def new(cls, name: str = "", **meta: Any) -> FlowDocument:
        return cls(meta={"id": str(uuid.uuid4()), "name": name, **meta})

    @property
    def id(self) -> str | None:
        return self.meta.get("id")

    @property
    def name(self) -> str:
        return self.meta.get("name") or ""

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def dumps(self) -> str:
        return dumps(self.to_data())


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def dumps(data: dict[str, Any]) -> str:
    """Stable text of a flow document: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def parse_text(text: str) -> tuple[FlowDocument | None, list[Problem]]:
    """JSON text -> document, or the problems that stop it from being one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [
            Problem(
                "invalid-json",
                f"not valid JSON: {exc.msg} at column {exc.colno}",
                line=exc.lineno,
                hint="fix the JSON syntax of the .flow file",
            )
        ]
    return parse_data(data)


def parse_data(data: Any) -> tuple[FlowDocument | None, list[Problem]]:
    """A decoded JSON value -> document, or every structural problem at once."""
    problems = structural_problems(data)
    if problems:
        return None, problems
    return FlowDocument.model_validate(data), []


def structural_problems(data: Any) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        problems.append(_schema_problem(data, err))
    return problems


def _schema_problem(data: Any, err: jsonschema.ValidationError) -> Problem:
    path = list(err.absolute_path)
    node = edge = None
    field_path = path
    if len(path) >= 2 and path[0] in ("nodes", "edges") and isinstance(path[1], int):
        items = data.get(path[0]) if isinstance(data, dict) else None
        item = items[path[1]] if isinstance(items, list) and len(items) > path[1] else None
        item_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        if item_id is not None:
            node, edge = (item_id, None) if path[0] == "nodes" else (None, item_id)
            field_path = path[2:]
        else:
            field_path = path
    return Problem(
        "invalid-document",
        _schema_message(err),
        node=node,
        edge=edge,
        field=format_path(field_path) or None,
        hint="see schema/flow-v1.schema.json for the .flow format",
    )


def _schema_message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        return err.message.replace("Additional properties are not allowed", "unknown field(s) not allowed:")
    if err.validator == "required":
        return err.message
    if err.validator == "const" and list(err.absolute_path) == ["version"]:
        return f"unsupported format version {err.instance!r}; this FlowOrchestrator reads version {FORMAT_VERSION}"
    if err.validator == "pattern":
        return f"{err.instance!r} is not a valid id: use letters, digits, '_' or '-', starting with a letter or '_'"
    return err.message


def format_path(path: list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load(path: str | Path) -> FlowDocument:
    """Read a .flow file; raise FlowInvalid (naming the file) if it is not a structurally valid document."""
    path = Path(path)
    doc, problems = parse_text(path.read_text(encoding="utf-8"))
    if problems or doc is None:
        raise FlowInvalid(problems, source=str(path))
    return doc


def save(doc: FlowDocument, path: str | Path) -> None:
    """Write atomically, so a crash mid-write never leaves half a file."""
    path = Path(path)
    # A temporary file of its own per save (two writers never share one), in the same directory
    # so that the final rename is atomic; removed if anything fails.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.chmod(tmp, path.stat().st_mode & 0o777)  # keep the file's permissions
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(doc.dumps())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
