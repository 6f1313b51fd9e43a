"""The data that crosses the Temporal boundary: workflow input, activity input, approval decisions.

Plain dataclasses of JSON values, so that histories stay readable in any Temporal tool and
replay tests can load them. Never put secrets here: activities fetch credentials by reference.
"""

# No `from __future__ import annotations` here: with real (not string) annotations Temporal's
# data converter does not re-parse the field types on every conversion.
from dataclasses import dataclass, field
from typing import Any

WORKFLOW_TYPE = "FlowRun"
DECIDE_UPDATE = "decide"
STATE_QUERY = "state"
NODE_MEMO_PREFIX = "fo.node."  # memo key of a control node's state, e.g. "fo.node.review"


@dataclass
class RunRequest:
    plan: dict[str, Any]
    input: Any = None
    # flow_id, version ("3" or "draft"), plan_hash, trigger ("manual", "webhook", ...),
    # trigger_node (which trigger node starts it), tenant, started_by
    run: dict[str, Any] = field(default_factory=dict)
    # Nodes not to call: {"<node id>": {"output": <recorded output>, "from_run": "<run id>"}}.
    # Each takes its recorded output as its result (a run resumed from a failed node).
    reuse: dict[str, Any] = field(default_factory=dict)
    # Node type -> task queue, as the deployment pinned them when the run started (plan.py
    # run_task_queues); a node's own task_queue wins, types not listed run on the run's queue.
    task_queues: dict[str, str] = field(default_factory=dict)


@dataclass
class NodeCall:
    run_id: str
    node_id: str
    node_type: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    # The same on every attempt of this node in this run: receivers use it to drop repeats.
    idempotency_key: str
    flow_id: str | None = None
    version: str | None = None
    # The run's tenant: the node's integrations and provider limits are this tenant's.
    tenant: str = "default"


@dataclass
class Decision:
    node_id: str
    decision: str  # "approved" or "rejected"
    by: str
    comment: str = ""
