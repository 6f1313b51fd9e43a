"""`Flow`: a `.flow` document seen from a notebook: build it, validate it, publish it, run it.

When a Jupyter server with real-time collaboration serves the file, `Flow.open` joins the
file's shared room (`floworch.collab`): edits go into the shared document, where every open
canvas shows them at once, and reads see what the canvases do, also while a cell runs. The
server saves the room to the file. Otherwise (no server, or ``live=False``) edits are saved to
the file at once, so the file on disk is always the flow as last edited.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
import weakref
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from floworch_server import alerts, flowdoc, nodes
from floworch_server.flowdoc import Edge, FlowDocument, Node, NodePolicy
from floworch_server.problems import FlowInvalid
from floworch_server.validate import validate

from . import _html, collab
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

    def __init__(self, flow: Flow, record: dict):
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
    def __init__(
        self, doc: FlowDocument | None, path: str | Path | None = None, *, room: collab.RoomClient | None = None
    ):
        self._doc = doc
        self.path = Path(path) if path is not None else None
        self.room = room  # the shared room this flow edits, or None: the file
        if room is not None:
            weakref.finalize(self, room.close, 0)  # without waiting: any thread may collect it
            if room.on_sync_latency is None:
                room.on_sync_latency = SyncLatencyReporter()

    @property
    def doc(self) -> FlowDocument:
        """The flow as a document; in a room, a snapshot of the shared document taken now."""
        if self.room is None:
            if self._doc is None:
                raise ValueError("a flow outside a room needs a document")
            return self._doc
        doc, problems = flowdoc.parse_data(self.room.read())
        if problems or doc is None:
            raise FlowInvalid(problems, source=str(self.path or self.name))
        return doc

    @doc.setter
    def doc(self, doc: FlowDocument) -> None:
        if self.room is not None:
            raise AttributeError("a live flow is edited through add_node/connect/update/remove")
        self._doc = doc

    @property
    def live(self) -> bool:
        """True when edits go to the shared room (and from there to every canvas and the file)."""
        return self.room is not None

    # ------------------------------------------------------------------ files
    @classmethod
    def open(cls, path: str | Path, *, live: bool | None = None) -> Flow:
        """Open a `.flow` file. A file without an id gets one (saved at once), so its runs stay linked.

        With a Jupyter server collaborating on the file, the flow edits its shared room; with
        ``live=False`` it edits the file, and ``live=True`` fails when there is no room.
        """
        room = None if live is False else collab.join(path, required=bool(live))
        if room is not None:
            flow = cls(None, path, room=room)
            if not flow._room_meta().get("id"):
                with room.transaction() as shared:
                    shared.set_meta("id", str(uuid.uuid4()))
            return flow
        flow = cls(flowdoc.load(path), path)
        if not flow.doc.id:
            flow.doc.meta["id"] = str(uuid.uuid4())
            flow.save()
        return flow

    @classmethod
    def new(
        cls, path: str | Path, name: str | None = None, *, overwrite: bool = False, live: bool | None = None
    ) -> Flow:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists: open it with fo.Flow.open({str(path)!r}) or pass overwrite=True")
        flow = cls(FlowDocument.new(name or path.stem), path)
        flow.save()
        room = None if live is False else collab.join(path, required=bool(live))
        return cls(None, path, room=room) if room is not None else flow

    def save(self) -> None:
        """Write the file now (a live flow's room is also saved by the server within a second)."""
        if self.room is not None:
            self.room.save()
        elif self.path is not None:
            flowdoc.save(self.doc, self.path)

    def close(self) -> None:
        """Leave the shared room (a file-mode flow has nothing to close)."""
        if self.room is not None:
            self.room.close()

    @property
    def id(self) -> str:
        flow_id = self._room_meta().get("id") if self.room is not None else self.doc.id
        if not flow_id:
            raise ValueError(f"flow {self.name!r} has no id (meta.id)")
        return flow_id

    @property
    def name(self) -> str:
        if self.room is not None:
            return str(self._room_meta().get("name") or "")
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
        compensate: str | None = None,
    ) -> str:
        """Add a node and return its id. Unknown types are refused here, with the known ones named.

        ``compensate`` names the node that undoes this one when a later node fails for good (a
        saga); it may be added after this one. `validate` checks what it names.
        """
        if nodes.get(type) is None:
            known = ", ".join(s.type for s in nodes.all_specs())
            raise ValueError(f"unknown node type {type!r}; known types: {known}")
        _check_compensate(compensate)
        if self.room is not None:
            return self._room_add_node(
                type, id, config=config, label=label, position=position, policy=policy, compensate=compensate
            )
        node_id = id or self._fresh_id(type.split(".")[-1])
        if self.doc.node(node_id):
            raise ValueError(f"a node with id {node_id!r} already exists in {self.name!r}")
        last = self.doc.nodes[-1].position.model_dump() if self.doc.nodes else None
        self.doc.nodes.append(_new_node(type, node_id, config, label, position, policy, last, compensate))
        self.save()
        return node_id

    def connect(
        self,
        source: str,
        target: str,
        source_port: str | None = None,
        target_port: str | None = None,
        *,
        id: str | None = None,
    ) -> str:
        if self.room is not None:
            return self._room_connect(source, target, source_port, target_port, id)
        for end, node_id in (("source", source), ("target", target)):
            if self.doc.node(node_id) is None:
                raise ValueError(f"{end} node {node_id!r} does not exist in {self.name!r}")
        edge_id = id or self._fresh_id(f"e_{source}_{source_port or 'out'}_{target}", edges=True)
        self.doc.edges.append(
            Edge(id=edge_id, source=source, sourceHandle=source_port, target=target, targetHandle=target_port)
        )
        self.save()
        return edge_id

    def update(
        self,
        node_id: str,
        *,
        config: dict | None = None,
        label: str | None = None,
        policy: dict | None = None,
        position: dict | None = None,
        compensate: str | None = None,
    ) -> None:
        """Change a node; ``config`` entries are merged into the existing config (``None`` removes one).
        ``compensate`` names the node that undoes this one; ``""`` removes it."""
        _check_compensate(compensate, empty_ok=True)
        if self.room is not None:
            return self._room_update(
                node_id, config=config, label=label, policy=policy, position=position, compensate=compensate
            )
        node = self.doc.node(node_id)
        if node is None:
            raise KeyError(f"no node {node_id!r} in {self.name!r}")
        if compensate is not None:
            node.compensate = compensate or None
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

    def compensate(self, node_id: str, *, by: str | None) -> None:
        """``node_id`` is undone by the node ``by`` when a later node fails for good; ``by=None``
        removes its compensation. Both nodes must exist (the rest is `validate`'s: ``by`` must be
        an activity no edge leads to, undoing one node only)."""
        _check_compensate(by)
        data = self.room.read() if self.room is not None else None
        ids = {n["id"] for n in data["nodes"]} if data is not None else {n.id for n in self.doc.nodes}
        if node_id not in ids:
            raise KeyError(f"no node {node_id!r} in {self.name!r}")
        if by is not None and by not in ids:
            raise ValueError(
                f"compensate: no node {by!r} in {self.name!r}; add the node that undoes {node_id!r} first (flow.add_node)"
            )
        self.update(node_id, compensate=by or "")

    def remove(self, item_id: str) -> None:
        """Remove a node (with its edges, and the compensations naming it) or an edge."""
        if self.room is not None:
            return self._room_remove(item_id)
        before = (len(self.doc.nodes), len(self.doc.edges))
        self.doc.nodes = [n for n in self.doc.nodes if n.id != item_id]
        self.doc.edges = [e for e in self.doc.edges if e.id != item_id and item_id not in (e.source, e.target)]
        if (len(self.doc.nodes), len(self.doc.edges)) == before:
            raise KeyError(f"no node or edge {item_id!r} in {self.name!r}")
        for node in self.doc.nodes:
            if node.compensate == item_id:
                node.compensate = None
        self.save()

    def _fresh_id(self, base: str, edges: bool = False) -> str:
        taken = {e.id for e in self.doc.edges} if edges else {n.id for n in self.doc.nodes}
        return _fresh(base, taken, edges)

    # ------------------------------------------------------------------ editing the room
    # Each edit is one transaction of the shared document: one update on the wire, applied
    # whole by every canvas. Checks read the document inside that transaction, so they see
    # the latest canvas edits.
    def _room_meta(self) -> dict:
        if self.room is None:
            raise RuntimeError("this flow is a file, not a room")
        return self.room.read()["meta"]

    def _shared(self):
        if self.room.closed:
            raise RuntimeError(
                f"the shared room of {self.path} was closed: open the flow again with fo.Flow.open({str(self.path)!r})"
            )
        return self.room.transaction()

    def _room_add_node(self, type: str, id: str | None, *, config, label, position, policy, compensate) -> str:
        with self._shared() as shared:
            data = shared.to_data()
            taken = {n["id"] for n in data["nodes"]}
            node_id = id or _fresh(type.split(".")[-1], taken, False)
            if node_id in taken:
                raise ValueError(f"a node with id {node_id!r} already exists in {self.name!r}")
            last = data["nodes"][-1].get("position") if data["nodes"] else None
            node = _new_node(
                type, node_id, config, label, position, policy, last if isinstance(last, dict) else None, compensate
            )
            shared.add_node(node.model_dump(mode="json", exclude_none=True))
        return node_id

    def _room_connect(
        self, source: str, target: str, source_port: str | None, target_port: str | None, id: str | None
    ) -> str:
        with self._shared() as shared:
            data = shared.to_data()
            node_ids = {n["id"] for n in data["nodes"]}
            for end, node_id in (("source", source), ("target", target)):
                if node_id not in node_ids:
                    raise ValueError(f"{end} node {node_id!r} does not exist in {self.name!r}")
            edge_id = id or _fresh(
                f"e_{source}_{source_port or 'out'}_{target}", {e["id"] for e in data["edges"]}, True
            )
            edge = Edge(id=edge_id, source=source, sourceHandle=source_port, target=target, targetHandle=target_port)
            shared.add_edge(edge.model_dump(mode="json", exclude_none=True))
        return edge_id

    def _room_update(self, node_id: str, *, config, label, policy, position, compensate) -> None:
        with self._shared() as shared:
            if node_id not in shared.ynodes:
                raise KeyError(f"no node {node_id!r} in {self.name!r}")
            shared.update_node(
                node_id,
                config=config,
                label=label,
                policy=NodePolicy.model_validate(policy).model_dump(mode="json", exclude_none=True)
                if policy is not None
                else None,
                position=flowdoc.Position.model_validate(position).model_dump(mode="json")
                if position is not None
                else None,
                compensate=compensate,
            )

    def _room_remove(self, item_id: str) -> None:
        with self._shared() as shared:
            if item_id in shared.ynodes:
                shared.remove_node(item_id)
            elif item_id in shared.yedges:
                shared.remove_edge(item_id)
            else:
                raise KeyError(f"no node or edge {item_id!r} in {self.name!r}")

    # ------------------------------------------------------------------ checking and running
    @property
    def draft(self):
        """The flow as it is now, compiled (a Plan; FlowInvalid if it is not valid), e.g. for
        ``run.replay(plan=flow.draft)``: would this draft still replay that run?"""
        from floworch_server.plan import compile_plan

        return compile_plan(self.doc)

    def validate(self) -> Problems:
        """Every problem of the flow at once; empty when it is valid."""
        if self.room is not None:
            doc, problems = flowdoc.parse_data(self.room.read())
            return Problems(problems if problems or doc is None else validate(doc))
        return Problems(validate(self.doc))

    def _sync(self) -> str:
        service().upsert_draft(self.doc, by=user(), path=str(self.path) if self.path else None)
        return self.id

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

    def run(
        self, input: Any = None, *, draft: bool = False, version: int | None = None, idempotency_key: str | None = None
    ) -> Run:
        """Start a run: of the latest published version, of ``version``, or of the draft (``draft=True``)."""
        record = run_sync(self._start(input, draft, version, idempotency_key))
        return Run(record["run_id"], record)

    async def run_async(
        self, input: Any = None, *, draft: bool = False, version: int | None = None, idempotency_key: str | None = None
    ) -> Run:
        record = await run_async(self._start(input, draft, version, idempotency_key))
        return Run(record["run_id"], record)

    def _start(self, input: Any, draft: bool, version: int | None, idempotency_key: str | None):
        """Check and store the flow here, in the caller's thread; return the start, to run on the engine's loop."""
        if draft:
            problems = self.validate()
            if problems:
                raise FlowInvalid(problems, source=str(self.path or self.name))
            self._sync()
        else:
            self._sync_if_new()
        return service().start_run(
            self.id, input=input, version="draft" if draft else version, by=user(), idempotency_key=idempotency_key
        )

    def _sync_if_new(self) -> None:
        if service().store.get_workflow(self.id) is None:
            self._sync()

    def runs(self, limit: int = 50) -> pd.DataFrame:
        from . import runs

        return runs(workflow=self.id, limit=limit)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        if self.room is not None:
            data = self.room.read()
            return f"<Flow {self.name!r} {len(data['nodes'])} nodes, {len(data['edges'])} edges ({self.path}, live: {self.room!r})>"
        return f"<Flow {self.name!r} {len(self.doc.nodes)} nodes, {len(self.doc.edges)} edges{f' ({self.path})' if self.path else ''}>"

    def _repr_html_(self) -> str:
        problems = self.validate()
        state = (
            "<span style='color:#2da44e'>valid</span>"
            if not problems
            else f"<span style='color:#cf222e'>{len(problems)} problem(s)</span>"
        )
        if self.room is not None:
            # Read raw: a flow a canvas is half-way through editing still shows.
            data = self.room.read()
            items = [(str(n.get("id", "")), str(n.get("type", "")), str(n.get("label", ""))) for n in data["nodes"]]
            edge_count = len(data["edges"])
        else:
            items = [(n.id, n.type, n.label) for n in self.doc.nodes]
            edge_count = len(self.doc.edges)
        rows = [[escape(node_id), escape(node_type), escape(label)] for node_id, node_type, label in items]
        return _html.card(
            f"Flow {escape(self.name)}",
            [f"{len(items)} nodes · {edge_count} edges · {state}", f"<code>{escape(str(self.path or ''))}</code>"],
            _html.table(["id", "type", "label"], rows, raw={0, 1, 2}) + (problems._repr_html_() if problems else ""),
        )


class SyncLatencyReporter:
    """Feeds the collaboration sync-latency alert rule from a room client's measurements.

    At most one sample per ``interval`` seconds is stored: the slowest of that window, so a
    busy room does not write a row per keystroke and a slow moment is never averaged away.
    The write happens on a thread of its own, never on the room's connection thread.
    """

    def __init__(self, interval: float = 10.0):
        self.interval = interval
        self._window_max: float | None = None
        self._window_start = 0.0
        self._lock = threading.Lock()

    def __call__(self, ms: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._window_max = ms if self._window_max is None else max(self._window_max, ms)
            if now - self._window_start < self.interval:
                return
            sample, self._window_max, self._window_start = self._window_max, None, now
        threading.Thread(target=self._store, args=(sample,), daemon=True, name="floworch-sync-latency").start()

    @staticmethod
    def _store(ms: float) -> None:
        # Straight into the store of this process's settings, opened once: not through the
        # kernel's service, whose calls run on the loop the room's connection needs.
        with contextlib.suppress(Exception):  # a lost sample only thins the alert's window
            alerts.record_sync_latency(ms)


def _fresh(base: str, taken: set[str], edges: bool) -> str:
    if base not in taken and edges:
        return base
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


_NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")  # the file format's node id (flow-v1.schema.json)


def _check_compensate(value: Any, empty_ok: bool = False) -> None:
    """``compensate`` is a node id (or None; ``""`` where it means "remove")."""
    if value is None or (empty_ok and value == ""):
        return
    if not isinstance(value, str) or not _NODE_ID.match(value):
        raise ValueError(
            f"compensate must be the id of the node that undoes this one (letters, digits, _ and -), got {value!r}"
            + ('; pass "" to remove it' if empty_ok else "")
        )


def _new_node(
    type: str, node_id: str, config, label: str, position, policy, last: dict | None, compensate: str | None = None
) -> Node:
    """The node add_node adds; without a position it goes to the right of the last node."""
    if position is None:
        position = {"x": last.get("x", 0) + 220, "y": last.get("y", 0)} if last else {"x": 0, "y": 0}
    return Node(
        id=node_id,
        type=type,
        label=label,
        position=position,
        config=config or {},
        policy=NodePolicy.model_validate(policy) if policy else None,
        compensate=compensate or None,
    )
