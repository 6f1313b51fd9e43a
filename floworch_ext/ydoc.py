"""`YFlow`: a `.flow` document as a shared Yjs document, the jupyter_ydoc type named ``flow``.

jupyter-collaboration opens ``.flow`` files in the room ``text:flow:<fileId>``: it loads the
file text with `set`, saves `get` one second after the last change, and calls `set` again
when the file changes on disk. Canvases (TypeScript, yjs) and kernels (`floworch.collab`,
pycrdt) edit the same Y document, so this layout is the contract between all of them:

    state   Map   jupyter_ydoc's own (dirty, path, hash); never saved into the file
    meta    Map   key -> JSON value: id, name, description and any free-form entry
    nodes   Map   node id -> Map
                    id, type, label   string
                    position          JSON object {"x": number, "y": number}, replaced whole
                    config            Map: config field -> JSON value
                    policy            JSON object, replaced whole (absent: type defaults)
                    compensate        string: id of the node that undoes this one (absent: none);
                                      the canvas draws it as a dashed link, it is not an edge
                    order             number, the node's place in the file's list
    edges   Map   edge id -> Map
                    id, source, target            string
                    sourceHandle, targetHandle    string or null (absent: default port)
                    order                         number

Why this shape:

- Nodes and edges are keyed by id, so two people adding, moving or deleting different nodes
  never conflict (an array would merge concurrent inserts by index).
- ``config`` is a map of fields, one level deep: two people editing different fields of one
  node (a URL here, a header there) both keep their change; two edits of the same field
  resolve to one of them. A field's value (``headers``, a template object, a list of cases)
  is replaced whole, as the properties form writes it: nested Y types would merge two
  half-edits of a list or an object into a value neither person wrote.
- ``position`` and ``policy`` are replaced whole: x without its y, or retry attempts from
  one person with another person's backoff, make no sense on their own.
- Labels are plain strings, not Y.Text: the canvas edits a label as one input field.
- ``order`` keeps the file's node and edge order, so saves diff like the file mode's appends.
  `get` lists items by (order, id), items without an order last; a new item takes
  max(order) + 1. It is never written to the file.
- Keys a file leaves out stay out of the maps, so what is saved is what was loaded.
- Two editors adding a node under the same id at the same moment end up with one of the two
  (a map key holds one value): new ids should carry something random (``transform_k3f9``),
  unless, as `fo.Flow` does, the id was read from the document just before.

Numbers: Yjs (JavaScript numbers) and pycrdt store every number as a float64, so whether a
file wrote ``2`` or ``2.0`` cannot travel through a room. The rule is JavaScript's
``JSON.stringify`` one (and jupyter_ydoc's notebooks'): an integral number whose magnitude is
below 2**53 is written as an integer, any other number as a float. A file whose integral
numbers are all spelled as integers (every file a room saved, and the file mode's when it was
given ints) round-trips byte for byte; an integral number spelled as a float (``2.0``) is
saved as ``2`` the next time the room saves. Integers beyond 2**53 lose precision in any Yjs
document: keep such values (ids, amounts in cents) as strings.

The file text is `floworch_server.flowdoc.dumps` of ``{"version": 1, "meta", "nodes",
"edges"}``: sorted keys, two-space indent, trailing newline, as the file mode saves it.
"""

from __future__ import annotations

import sys

_imported_first = "jupyter_ydoc" not in sys.modules
if _imported_first:
    # jupyter_ydoc's package init loads every registered document type, this module included,
    # and this module needs its base class from that package. Imported first, this module
    # would be found half-initialised by that registry: let the package initialise (with its
    # own complete copy of this module) while this one is out of sys.modules, then register
    # this module's class (end of file) so that there is one YFlow.
    import importlib

    _this = sys.modules.pop(__name__)
    try:
        importlib.import_module("jupyter_ydoc")
    finally:
        sys.modules[__name__] = _this

# The imports below must follow that dance.
# ruff: noqa: E402
import json
from collections.abc import Callable, Collection, Iterable
from functools import partial
from typing import Any

import jupyter_ydoc
from jupyter_ydoc.ybasedoc import YBaseDoc
from pycrdt import Awareness, Doc, Map

from floworch_server.flowdoc import FORMAT_VERSION, dumps

ORDER = "order"  # layout-only key of node and edge maps
_MAX_EXACT_INT = 2**53  # above this a float64 no longer holds every integer


class FlowTextError(ValueError):
    """File text that cannot become the shared document (the document keeps its content)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line = line
        self.column = column


class YFlow(YBaseDoc):
    """The shared document of a ``.flow`` file (see the module docstring for its layout)."""

    def __init__(self, ydoc: Doc | None = None, awareness: Awareness | None = None):
        super().__init__(ydoc, awareness)
        self._ymeta: Map = self._ydoc.get("meta", type=Map)
        self._ynodes: Map = self._ydoc.get("nodes", type=Map)
        self._yedges: Map = self._ydoc.get("edges", type=Map)
        for root in (self._ymeta, self._ynodes, self._yedges):
            self.undo_manager.expand_scope(root)

    @property
    def version(self) -> str:
        return "1.0.0"

    @property
    def ymeta(self) -> Map:
        return self._ymeta

    @property
    def ynodes(self) -> Map:
        return self._ynodes

    @property
    def yedges(self) -> Map:
        return self._yedges

    # ------------------------------------------------------------------ file text <-> document
    def get(self) -> str:
        """The file text of the document as it is now."""
        return dumps(self.to_data())

    def set(self, value: str) -> None:
        """Make the document hold the flow of a file's text.

        Only what differs is written, in one transaction: loading a file the document already
        holds changes nothing, and a change on disk touches only the nodes, edges and fields it
        changed, so edits other people make meanwhile elsewhere in the flow survive it.
        """
        data = parse_text(value, self.path)
        with self._ydoc.transaction():
            _sync_plain_map(self._ymeta, data.get("meta", {}))
            _sync_items(self._ynodes, data.get("nodes", []), nested={"config"})
            _sync_items(self._yedges, data.get("edges", []), nested=set())

    def to_data(self) -> dict[str, Any]:
        """The document as the JSON value of its file."""
        with self._ydoc.transaction():
            return {
                "version": FORMAT_VERSION,
                "meta": plain(self._ymeta.to_py() or {}),
                "nodes": _items(self._ynodes),
                "edges": _items(self._yedges),
            }

    def observe(self, callback: Callable[[str, Any], None]) -> None:
        self.unobserve()
        self._subscriptions[self._ystate] = self._ystate.observe(partial(callback, "state"))
        self._subscriptions[self._ymeta] = self._ymeta.observe_deep(partial(callback, "meta"))
        self._subscriptions[self._ynodes] = self._ynodes.observe_deep(partial(callback, "nodes"))
        self._subscriptions[self._yedges] = self._yedges.observe_deep(partial(callback, "edges"))

    # ------------------------------------------------------------------ editing
    # One transaction each; callers may wrap several in one of their own.
    def add_node(self, node: dict[str, Any]) -> None:
        """Add a node (a node object of the file format) after the existing ones."""
        self._add(self._ynodes, node, nested={"config"})

    def add_edge(self, edge: dict[str, Any]) -> None:
        self._add(self._yedges, edge, nested=set())

    def update_node(
        self,
        node_id: str,
        *,
        config: dict[str, Any] | None = None,
        label: str | None = None,
        position: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        compensate: str | None = None,
    ) -> None:
        """Change a node. ``config`` entries are written field by field (``None`` removes one),
        so a concurrent edit of another field of the same node is kept. ``compensate`` names the
        node that undoes this one; ``""`` removes it (``None``, like the others: unchanged)."""
        with self._ydoc.transaction():
            ynode = self._ynodes.get(node_id)
            if not isinstance(ynode, Map):
                raise KeyError(node_id)
            if config:
                yconfig = ynode.get("config")
                if not isinstance(yconfig, Map):
                    current = yconfig if isinstance(yconfig, dict) else {}
                    ynode["config"] = yconfig = Map({k: v for k, v in current.items()})
                for key, value in config.items():
                    if value is None:
                        if key in yconfig:
                            del yconfig[key]
                    elif not same(yconfig.get(key), value):
                        yconfig[key] = value
            for key, value in (("label", label), ("position", position), ("policy", policy)):
                if value is not None and not same(ynode.get(key), value):
                    ynode[key] = value
            if compensate == "":
                if "compensate" in ynode:
                    del ynode["compensate"]
            elif compensate is not None and ynode.get("compensate") != compensate:
                ynode["compensate"] = compensate

    def remove_node(self, node_id: str) -> list[str]:
        """Remove a node and the edges touching it; returns the removed edges' ids. A node it
        compensated is left without a compensation (as the canvas does), not naming a ghost."""
        with self._ydoc.transaction():
            if node_id not in self._ynodes:
                raise KeyError(node_id)
            del self._ynodes[node_id]
            for ynode in self._ynodes.values():
                if isinstance(ynode, Map) and ynode.get("compensate") == node_id:
                    del ynode["compensate"]
            gone = [
                edge_id
                for edge_id, yedge in self._yedges.items()
                if isinstance(yedge, Map) and node_id in (yedge.get("source"), yedge.get("target"))
            ]
            for edge_id in gone:
                del self._yedges[edge_id]
            return gone

    def remove_edge(self, edge_id: str) -> None:
        with self._ydoc.transaction():
            if edge_id not in self._yedges:
                raise KeyError(edge_id)
            del self._yedges[edge_id]

    def set_meta(self, key: str, value: Any) -> None:
        with self._ydoc.transaction():
            if value is None:
                if key in self._ymeta:
                    del self._ymeta[key]
            elif not same(self._ymeta.get(key), value):
                self._ymeta[key] = value

    def _add(self, ymap: Map, item: dict[str, Any], nested: Collection[str]) -> None:  # (`set` is a method here)
        with self._ydoc.transaction():
            item_id = item.get("id")
            if not isinstance(item_id, str) or not item_id:
                raise ValueError(f"an item of the flow needs a string id, got {item_id!r}")
            if item_id in ymap:
                raise ValueError(f"{item_id!r} already exists")
            orders = [o for o in (_order(y) for y in ymap.values()) if o is not None]
            entry = {**item, ORDER: (max(orders) + 1) if orders else 0}
            ymap[item_id] = _prelim(entry, nested)


# ---------------------------------------------------------------------- reading
def plain(value: Any) -> Any:
    """A value read from the Y document, with its numbers spelled per the module's rule."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _MAX_EXACT_INT:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """Equal as JSON (``True == 1`` and ``1 == 1.0`` in Python; only the second holds here)."""
    return _canonical(a) == _canonical(b)


def _canonical(value: Any) -> str:
    if isinstance(value, Map):
        value = value.to_py()
    return json.dumps(plain(value), sort_keys=True, ensure_ascii=False)


def _order(yitem: Any) -> float | None:
    value = yitem.get(ORDER) if isinstance(yitem, Map) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _items(ymap: Map) -> list[dict[str, Any]]:
    rows = []
    for item_id, yitem in ymap.items():
        if not isinstance(yitem, Map):
            continue  # not an item of this layout; skipped rather than saved as garbage
        data = yitem.to_py() or {}
        order = _order(yitem)
        data.pop(ORDER, None)
        data.setdefault("id", item_id)
        rows.append(((order is None, order or 0, item_id), plain(data)))
    rows.sort(key=lambda row: row[0])
    return [data for _, data in rows]


# ---------------------------------------------------------------------- writing
def parse_text(text: str, path: str | None = None) -> dict[str, Any]:
    """File text -> the JSON value the layout can hold, or a FlowTextError saying what stops it.

    Only what the layout cannot represent is refused (bad JSON, items without a unique string
    id, a config that is not an object): every other problem of a flow (unknown node types,
    bad config values, dangling edges) is the validator's to report, and the canvas must be
    able to open such a flow to fix it.
    """
    where = path or "the .flow file"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlowTextError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
            "the shared document keeps its content until the file is fixed",
            line=exc.lineno,
            column=exc.colno,
        ) from None
    if not isinstance(data, dict):
        raise FlowTextError(f"{where} must hold a JSON object with version, meta, nodes and edges")
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise FlowTextError(
            f"{where} has format version {version!r}; this FlowOrchestrator reads version {FORMAT_VERSION}"
        )
    extra = sorted(set(data) - {"version", "meta", "nodes", "edges"})
    if extra:
        raise FlowTextError(
            f"{where} has unknown top-level field(s) {', '.join(extra)}: a flow has version, meta, nodes and edges"
        )
    if not isinstance(data.get("meta", {}), dict):
        raise FlowTextError(f"{where}: meta must be an object")
    for section in ("nodes", "edges"):
        items = data.get(section, [])
        if not isinstance(items, list):
            raise FlowTextError(f"{where}: {section} must be a list")
        seen: set[str] = set()
        for i, item in enumerate(items):
            item_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(item_id, str) or not item_id:
                raise FlowTextError(f"{where}: {section}[{i}] needs a string id")
            if item_id in seen:
                raise FlowTextError(f"{where}: two {section} have the id {item_id!r}; ids must be unique")
            seen.add(item_id)
            if section == "nodes" and not isinstance(item.get("config", {}), dict):
                raise FlowTextError(f"{where}: config of node {item_id!r} must be an object")
    return data


def _prelim(entry: dict[str, Any], nested: Collection[str]) -> Map:
    return Map({k: (Map(dict(v)) if k in nested and isinstance(v, dict) else v) for k, v in entry.items()})


def _sync_plain_map(ymap: Map, wanted: dict[str, Any]) -> None:
    for key in [k for k in ymap.keys() if k not in wanted]:  # noqa: SIM118 - pycrdt types Map.__iter__ as a non-iterator
        del ymap[key]
    for key, value in wanted.items():
        if key not in ymap or not same(ymap.get(key), value):
            ymap[key] = value


def _sync_items(ymap: Map, items: Iterable[dict[str, Any]], nested: set[str]) -> None:
    wanted = {item["id"]: {**item, ORDER: order} for order, item in enumerate(items)}
    for item_id in [k for k in ymap.keys() if k not in wanted]:  # noqa: SIM118 - pycrdt types Map.__iter__ as a non-iterator
        del ymap[item_id]
    for item_id, entry in wanted.items():
        yitem = ymap.get(item_id)
        if not isinstance(yitem, Map):
            ymap[item_id] = _prelim(entry, nested)
            continue
        for key in [k for k in yitem.keys() if k not in entry]:  # noqa: SIM118 - pycrdt types Map.__iter__ as a non-iterator
            del yitem[key]
        for key, value in entry.items():
            current = yitem.get(key) if key in yitem else _MISSING
            if key in nested and isinstance(value, dict):
                if isinstance(current, Map):
                    _sync_plain_map(current, value)
                else:
                    yitem[key] = Map(dict(value))
            elif current is _MISSING or isinstance(current, Map) or not same(current, value):
                yitem[key] = value


_MISSING = object()


if _imported_first and "flow" in jupyter_ydoc.ydocs:
    jupyter_ydoc.ydocs["flow"] = YFlow  # in place of the registry's copy (see the imports)
