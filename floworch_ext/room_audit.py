"""Edits made in flows' collaboration rooms, in the audit log: one entry per user per minute.

A drag sends dozens of updates a second; the audit log wants "Eddie changed the nodes approve and
check of orders.flow at 10:42". So the first update a user sends to a room opens a batch holding
the flow as it was; ``interval`` seconds later the batch is closed and one ``workflow.edit``
entry written with what differs: nodes added, removed, changed and only moved, edges added and
removed. When others edited the same room in that minute, the entry names them (``with``):
their changes are in the same difference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 60.0


@dataclass
class Batch:
    room_id: str
    user: str
    document: Any  # the room's YFlow
    before: dict
    started: float = field(default_factory=time.time)
    updates: int = 0


def difference(before: dict, after: dict) -> dict:
    """What changed between two flows, by node and edge id."""
    old = {n["id"]: n for n in before.get("nodes", [])}
    new = {n["id"]: n for n in after.get("nodes", [])}
    both = sorted(old.keys() & new.keys())

    def without_position(node: dict) -> dict:
        return {k: v for k, v in node.items() if k != "position"}

    old_edges = {e["id"] for e in before.get("edges", [])}
    new_edges = {e["id"] for e in after.get("edges", [])}
    return {
        "nodes_added": sorted(new.keys() - old.keys()),
        "nodes_removed": sorted(old.keys() - new.keys()),
        "nodes_changed": [n for n in both if without_position(old[n]) != without_position(new[n])],
        "nodes_moved": [n for n in both if without_position(old[n]) == without_position(new[n]) and old[n] != new[n]],
        "edges_added": sorted(new_edges - old_edges),
        "edges_removed": sorted(old_edges - new_edges),
    }


class RoomEdits:
    def __init__(self, store_of: Any, interval: float = INTERVAL_SECONDS) -> None:
        self._store_of = store_of  # () -> the Store of the server's tenant, once connected
        self.interval = interval
        self._batches: dict[tuple[str, str], Batch] = {}

    def record(self, room_id: str, user: str, document: Any) -> None:
        """Called with each document update let into a room, before the room applies it."""
        key = (room_id, user)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = Batch(room_id, user, document, document.to_data())
            asyncio.get_running_loop().call_later(self.interval, self.flush, key)
        batch.updates += 1

    def flush(self, key: tuple[str, str]) -> None:
        batch = self._batches.pop(key, None)
        if batch is None:
            return
        try:
            after = batch.document.to_data()
            change = difference(batch.before, after)
            if not any(change.values()):
                return  # edits that cancelled out (moved and moved back)
            others = sorted({u for (room, u) in self._batches if room == batch.room_id and u != batch.user})
            detail = {"path": getattr(batch.document, "path", None), "updates": batch.updates, **change}
            if others:
                detail["with"] = others
            target = (after.get("meta") or {}).get("id") or detail["path"] or batch.room_id
            self._store_of().audit(batch.user, "workflow.edit", target, detail)
        except Exception:  # an audit failure must not break collaboration
            log.exception("could not write the audit entry of %s's edits in %s", batch.user, batch.room_id)

    def flush_all(self) -> None:
        for key in list(self._batches):
            self.flush(key)
