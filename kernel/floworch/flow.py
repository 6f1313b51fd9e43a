"""`Flow`: a `.flow` document seen from a notebook: build it, validate it, publish it, run it.

Edits are saved to the file at once, so the file on disk is always the flow as last edited.
"""

from __future__ import annotations

import uuid
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from floworch_server import flowdoc, nodes
from floworch_server.flowdoc import Edge, FlowDocument, Node, NodePolicy
from floworch_server.problems import FlowInvalid
from floworch_server.validate import validate

from . import _html
from ._loop import run_async, run_sync
from ._service import service, user
from .run import Run


class Problems(list):
    """The problems of a flow: empty when it is valid. Shown as a table in a notebook."""

    def _repr_html_(self) -> str:
        if not self:
            return "<div style='color:#2da44e'>✓ the flow is valid</div>"
        return _html.table(["where", "problem", "what to do"], [[p.location, p.message, p.hint or ""] for p in self])

    def __repr__(self) -> str:
        if not self:
            return "Problems([]) - the flow is valid"
        return "Problems([\n" + "\n".join(f"  {p}" for p in self) + "\n])"


class Version:
    """An immutable published version of a flow."""

    def __init__(self, flow: "Flow", record: dict):
        self.flow = flow
        self.record = record
        self.number: int = record["version"]
        self.plan_hash: str = record["plan_hash"]
        self.note: str = record.get("note") or ""

    def run(self, input: Any = None, **kwargs: Any) -> Run:
        return self.flow.run(input, version=self.number, **kwargs)

    def __repr__(self) -> str:
        return f"<Version {self.number} of {self.flow.name!r} plan {self.plan_hash[:12]}>"

    def _repr_html_(self) -> str:
        return _html.card(
            f"Version {self.number} of {escape(self.flow.name)}",
            [
                f"plan <code>{self.plan_hash[:16]}</code>",
                f"published by {escape(str(self.record.get('created_by')))} at {escape(str(self.record.get('created_at')))}",
                escape(self.note),
            ],
        )


class Flow:
    def __init__(self, doc: FlowDocument, path: str | Path | None = None):
        self.doc = doc
        self.path = Path(path) if path is not None else None

    # ------------------------------------------------------------------ files
    @classmethod
    def open(cls, path: str | Path) -> "Flow":
        """Open a `.flow` file. A file without an id gets one (saved at once), so its runs stay linked."""
        flow = cls(flowdoc.load(path), path)
        if not flow.doc.id:
            flow.doc.meta["id"] = str(uuid.uuid4())
            flow.save()
        return flow

    @classmethod
    def new(cls, path: str | Path, name: str | None = None, *, overwrite: bool = False) -> "Flow":
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists: open it with fo.Flow.open({str(path)!r}) or pass overwrite=True")
        flow = cls(FlowDocument.new(name or path.stem), path)
        flow.save()
        return flow

    def save(self) -> None:
        if self.path is not None:
            flowdoc.save(self.doc, self.path)

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def name(self) -> str:
        return self.doc.name

    @property
    def nodes(self) -> list[dict]:
        return [n.model_dump(mode="json", exclude_none=True) for n in self.doc.nodes]

    @property
    def edges(self) -> list[dict]:
        return [e.model_dump(mode="json", exclude_none=True) for e in self.doc.edges]

    # ------------------------------------------------------------------ editing
    def add_node(
        self,
        type: str,
        id: str | None = None,
        *,
        config: dict | None = None,
        label: str = "",
        position: dict | None = None,
        policy: dict | None = None,
    ) -> str:
        """Add a node and return its id. Unknown types are refused here, with the known ones named."""
        if nodes.get(type) is None:
            known = ", ".join(s.type for s in nodes.all_specs())
            raise ValueError(f"unknown node type {type!r}; known types: {known}")
        node_id = id or self._fresh_id(type.split(".")[-1])
        if self.doc.node(node_id):
            raise ValueError(f"a node with id {node_id!r} already exists in {self.name!r}")
        if position is None:
            last = self.doc.nodes[-1].position if self.doc.nodes else None
            position = {"x": (last.x + 220) if last else 0, "y": last.y if last else 0}
        node = Node(
            id=node_id,
            type=type,
            label=label,
            position=position,
            config=config or {},
            policy=NodePolicy.model_validate(policy) if policy else None,
        )
        self.doc.nodes.append(node)
        self.save()
        return node_id

    def connect(self, source: str, target: str, source_port: str | None = None, target_port: str | None = None, *, id: str | None = None) -> str:
        for end, node_id in (("source", source), ("target", target)):
            if self.doc.node(node_id) is None:
                raise ValueError(f"{end} node {node_id!r} does not exist in {self.name!r}")
        edge_id = id or self._fresh_id(f"e_{source}_{source_port or 'out'}_{target}", edges=True)
        self.doc.edges.append(Edge(id=edge_id, source=source, sourceHandle=source_port, target=target, targetHandle=target_port))
        self.save()
        return edge_id

    def update(self, node_id: str, *, config: dict | None = None, label: str | None = None, policy: dict | None = None, position: dict | None = None) -> None:
        """Change a node; ``config`` entries are merged into the existing config (``None`` removes one)."""
        node = self.doc.node(node_id)
        if node is None:
            raise KeyError(f"no node {node_id!r} in {self.name!r}")
        if config is not None:
            merged = {**node.config, **config}
            node.config = {k: v for k, v in merged.items() if v is not None}
        if label is not None:
            node.label = label
        if policy is not None:
            node.policy = NodePolicy.model_validate(policy)
        if position is not None:
            node.position = flowdoc.Position.model_validate(position)
        self.save()

    def remove(self, item_id: str) -> None:
        """Remove a node (with its edges) or an edge."""
        before = (len(self.doc.nodes), len(self.doc.edges))
        self.doc.nodes = [n for n in self.doc.nodes if n.id != item_id]
        self.doc.edges = [e for e in self.doc.edges if e.id != item_id and item_id not in (e.source, e.target)]
        if (len(self.doc.nodes), len(self.doc.edges)) == before:
            raise KeyError(f"no node or edge {item_id!r} in {self.name!r}")
        self.save()

    def _fresh_id(self, base: str, edges: bool = False) -> str:
        taken = {e.id for e in self.doc.edges} if edges else {n.id for n in self.doc.nodes}
        if base not in taken and edges:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    # ------------------------------------------------------------------ checking and running
    def validate(self) -> Problems:
        """Every problem of the flow at once; empty when it is valid."""
        return Problems(validate(self.doc))

    def _sync(self) -> str:
        service().upsert_draft(self.doc, by=user(), path=str(self.path) if self.path else None)
        return self.doc.id

    def publish(self, note: str = "") -> Version:
        """Publish the flow as it is now: an immutable version with its plan hash."""
        problems = self.validate()
        if problems:
            raise FlowInvalid(problems, source=str(self.path or self.name))
        self._sync()
        return Version(self, run_sync(service().publish(self.id, note=note, by=user())))

    async def publish_async(self, note: str = "") -> Version:
        problems = self.validate()
        if problems:
            raise FlowInvalid(problems, source=str(self.path or self.name))
        self._sync()
        return Version(self, await run_async(service().publish(self.id, note=note, by=user())))

    def unpublish(self) -> None:
        """Take the flow's triggers down (schedules, webhooks, event subscriptions); versions stay."""
        run_sync(service().unpublish(self.id, by=user()))

    def webhooks(self) -> list[dict]:
        """URL path and signing secret of each trigger.webhook node of the published flow."""
        return service().webhooks(self.id)

    def pause(self) -> list[str]:
        """Pause the schedules of this flow's trigger.cron nodes."""
        return run_sync(service().pause_schedules(self.id, paused=True, by=user()))

    def resume(self) -> list[str]:
        return run_sync(service().pause_schedules(self.id, paused=False, by=user()))

    def versions(self) -> list[Version]:
        return [Version(self, v) for v in service().list_versions(self.id)]

    def run(self, input: Any = None, *, draft: bool = False, version: int | None = None, idempotency_key: str | None = None) -> Run:
        """Start a run: of the latest published version, of ``version``, or of the draft (``draft=True``)."""
        if draft:
            problems = self.validate()
            if problems:
                raise FlowInvalid(problems, source=str(self.path or self.name))
            self._sync()
        else:
            self._sync_if_new()
        record = run_sync(
            service().start_run(self.id, input=input, version="draft" if draft else version, by=user(), idempotency_key=idempotency_key)
        )
        return Run(record["run_id"], record)

    async def run_async(self, input: Any = None, *, draft: bool = False, version: int | None = None, idempotency_key: str | None = None) -> Run:
        if draft:
            problems = self.validate()
            if problems:
                raise FlowInvalid(problems, source=str(self.path or self.name))
            self._sync()
        else:
            self._sync_if_new()
        record = await run_async(
            service().start_run(self.id, input=input, version="draft" if draft else version, by=user(), idempotency_key=idempotency_key)
        )
        return Run(record["run_id"], record)

    def _sync_if_new(self) -> None:
        if service().store.get_workflow(self.id) is None:
            self._sync()

    def runs(self, limit: int = 50) -> pd.DataFrame:
        from . import runs

        return runs(workflow=self.id, limit=limit)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        return f"<Flow {self.name!r} {len(self.doc.nodes)} nodes, {len(self.doc.edges)} edges{f' ({self.path})' if self.path else ''}>"

    def _repr_html_(self) -> str:
        problems = self.validate()
        state = "<span style='color:#2da44e'>valid</span>" if not problems else f"<span style='color:#cf222e'>{len(problems)} problem(s)</span>"
        rows = [[escape(n.id), escape(n.type), escape(n.label)] for n in self.doc.nodes]
        return _html.card(
            f"Flow {escape(self.name)}",
            [f"{len(self.doc.nodes)} nodes · {len(self.doc.edges)} edges · {state}", f"<code>{escape(str(self.path or ''))}</code>"],
            _html.table(["id", "type", "label"], rows, raw={0, 1, 2}) + (problems._repr_html_() if problems else ""),
        )

