"""The interpreter: one Temporal workflow type that runs any Plan.

Nodes run as soon as every node before them has finished; a node whose incoming edges all come
from skipped nodes or untaken branches is skipped itself. Activity nodes are Temporal
activities whose activity id is the node id, so a history maps onto the graph. Control nodes run
here, deterministically, and record their state in the workflow memo (key ``fo.node.<id>``),
which puts it in the history next to the activity events: history stays the single source of
truth for per-node status.

Compensation (saga): a node's ``compensate`` names an activity node no edge leads to. When a node
fails for good, the compensations of the nodes that succeeded run, last completed first, each
once, as activities (activity id: the compensating node's id); the compensated node's memo state
goes "compensating", then "compensated" or "compensation_failed"; then the run fails with the
original error. Nodes listed in the RunRequest's ``reuse`` are not called: their recorded output
is their result (memo state "reused"), and this run does not compensate them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from . import expr, nodes
    from .messages import DECIDE_UPDATE, NODE_MEMO_PREFIX, STATE_QUERY, WORKFLOW_TYPE, Decision, NodeCall, RunRequest
    from .nodes.spec import NodeError


def retry_policy(retry: dict[str, Any]) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=retry["initial_interval_seconds"]),
        backoff_coefficient=retry["backoff"],
        maximum_interval=timedelta(seconds=retry["max_interval_seconds"]),
        maximum_attempts=retry["max_attempts"],
        non_retryable_error_types=list(retry["non_retryable_errors"]) or None,
    )


class NodeFailed(Exception):
    def __init__(self, node_id: str, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.node_id = node_id
        self.cause = cause  # the activity's failure, kept so the run's error carries its stack trace


class ControlContext:
    """What a control node's ``control()`` may use: all of it deterministic."""

    def __init__(self, run: FlowRun, node_id: str, scope: dict[str, Any], suffix: str = ""):
        self._run = run
        self.node_id = node_id
        self._scope = scope
        self._suffix = suffix

    def evaluate(self, source: str, field: str) -> Any:
        try:
            return expr.evaluate(source, self._scope)
        except expr.ExprError as exc:
            raise NodeError(f"config.{field}: {exc}", retryable=False) from None

    def now(self) -> datetime:
        return workflow.now()

    def single_input(self, inputs: dict[str, Any]) -> Any:
        return next(iter(inputs.values())) if len(inputs) == 1 else inputs

    async def sleep(self, seconds: float) -> None:
        until = workflow.now() + timedelta(seconds=seconds)
        self._run._set_state(self.node_id, "waiting", self._suffix, reason="timer", until=until.isoformat())
        await workflow.sleep(seconds, summary=self.node_id)

    async def wait_for_decision(self, timeout_seconds: float | None, approvers: list[str] | None) -> dict | None:
        self._run._waiting[self.node_id] = {"approvers": list(approvers or [])}
        info: dict[str, Any] = {"reason": "approval"}
        if timeout_seconds:
            info["until"] = (workflow.now() + timedelta(seconds=timeout_seconds)).isoformat()
        self._run._set_state(self.node_id, "waiting", self._suffix, **info)
        try:
            await workflow.wait_condition(
                lambda: self.node_id in self._run._decisions,
                timeout=timedelta(seconds=timeout_seconds) if timeout_seconds else None,
            )
        except TimeoutError:
            return None
        finally:
            self._run._waiting.pop(self.node_id, None)
        return self._run._decisions[self.node_id]

    async def run_body(self, items: list, concurrency: int) -> list:
        """For control.for_each: run the loop body once per item; the body's results in order."""
        return await self._run.run_loop_body(self.node_id, items, concurrency, self._scope, self._suffix)


@workflow.defn(name=WORKFLOW_TYPE)
class FlowRun:
    def __init__(self) -> None:
        self._waiting: dict[str, dict] = {}
        self._decisions: dict[str, dict] = {}
        self._states: dict[str, dict] = {}

    # ------------------------------------------------------------------ handlers
    @workflow.update(name=DECIDE_UPDATE)
    async def decide(self, decision: Decision) -> dict:
        self._decisions[decision.node_id] = {
            "decision": decision.decision,
            "by": decision.by,
            "comment": decision.comment,
            "at": workflow.now().isoformat(),
        }
        return self._decisions[decision.node_id]

    @decide.validator
    def _check_decision(self, decision: Decision) -> None:
        if decision.decision not in ("approved", "rejected"):
            raise ValueError(f"decision must be 'approved' or 'rejected', got {decision.decision!r}")
        if decision.node_id not in self._waiting:
            waiting = ", ".join(sorted(self._waiting)) or "none"
            raise ValueError(f"node '{decision.node_id}' is not waiting for approval (waiting: {waiting})")
        approvers = self._waiting[decision.node_id]["approvers"]
        if approvers and decision.by not in approvers:
            raise ValueError(
                f"{decision.by!r} may not decide on '{decision.node_id}': approvers are {', '.join(approvers)}"
            )

    @workflow.query(name=STATE_QUERY)
    def state(self) -> dict:
        return {"control": self._states, "waiting": sorted(self._waiting)}

    # ------------------------------------------------------------------ run
    @workflow.run
    async def run(self, request: RunRequest) -> dict:
        plan = request.plan
        self._plan_nodes: dict[str, dict] = plan["nodes"]
        self._run_meta = request.run
        self._order: list[str] = plan["order"]
        self._loops: dict[str, dict] = plan.get("loops", {})
        self._reuse: dict[str, dict] = request.reuse or {}
        self._type_queues: dict[str, str] = request.task_queues or {}
        self._completed: list[str] = []  # nodes of the top-level graph that succeeded, in order
        compensating = {n["compensate"] for n in self._plan_nodes.values() if n.get("compensate")}
        # Loop-back edges close a for_each body; they are not part of the acyclic graph.
        self._incoming: dict[str, list[dict]] = {n: [] for n in self._order}
        self._successors: dict[str, list[str]] = {n: [] for n in self._order}
        for edge in plan["edges"]:
            if edge.get("loop_back"):
                continue
            self._incoming[edge["target"]].append(edge)
            if edge["target"] not in self._successors[edge["source"]]:
                self._successors[edge["source"]].append(edge["target"])

        info = workflow.info()
        scope: dict[str, Any] = {
            "input": request.input,
            "nodes": {},
            "run": {
                "id": info.workflow_id,
                "flow_id": request.run.get("flow_id"),
                "version": request.run.get("version"),
                "trigger": request.run.get("trigger", "manual"),
            },
        }
        start_node = request.run.get("trigger_node") or plan["triggers"][0]
        in_bodies = {n for loop in self._loops.values() for n in loop["body"]}
        members = [n for n in self._order if n not in in_bodies and n not in compensating]
        seeds = {t: (["out"] if t == start_node else []) for t in plan["triggers"]}
        scope["nodes"][start_node] = {"output": request.input}
        try:
            await self._run_graph(members, seeds, scope, "")
        except NodeFailed as failure:
            undone = await self._compensate(scope)
            raise ApplicationError(
                str(failure) + undone, failure.node_id, type="NodeFailed", non_retryable=True
            ) from failure.cause

        leaves = [
            n for n in members
            if not self._successors[n] and n in scope["nodes"] and self._plan_nodes[n]["kind"] != "trigger"
        ]  # fmt: skip
        return {"outputs": {n: scope["nodes"][n]["output"] for n in leaves}}

    async def _run_graph(self, members: list[str], seeds: dict[str, list[str]], scope: dict, suffix: str) -> None:
        """Run the nodes ``members`` (in plan order) to the end. ``seeds`` are nodes already
        finished, with the ports they follow. Outputs go into ``scope["nodes"]``; ``suffix``
        tells iterations of a loop body apart in activity ids (``node#2``)."""
        member_set = set(members)
        ports: dict[str, list[str]] = {}  # finished node -> output ports followed (empty: skipped)
        started: set[str] = set()
        running: dict[asyncio.Task, str] = {}

        def finish(node_id: str, followed: list[str]) -> None:
            ports[node_id] = followed
            for nxt in self._successors[node_id]:
                if nxt in member_set:
                    consider(nxt)

        def consider(node_id: str) -> None:
            incoming = [e for e in self._incoming[node_id] if e["source"] in member_set]
            if node_id in started or any(e["source"] not in ports for e in incoming):
                return
            started.add(node_id)
            active = [e for e in incoming if e["port"] in ports[e["source"]]]
            if not active:
                if self._plan_nodes[node_id]["kind"] != "trigger":
                    self._set_state(node_id, "skipped", suffix)
                finish(node_id, [])
                return
            node = self._plan_nodes[node_id]
            if not suffix and node_id in self._reuse and node["kind"] == "activity":
                # Taken from an earlier run, not called: it follows every output port, as a call would.
                recorded = self._reuse[node_id]
                self._set_state(node_id, "reused", from_run=recorded.get("from_run"))
                scope["nodes"][node_id] = {"output": recorded.get("output")}
                finish(node_id, [p.name for p in nodes.require(node["type"]).outputs_for(node["config"])])
                return
            inputs = {e["source"]: scope["nodes"][e["source"]]["output"] for e in active}
            task = asyncio.create_task(self._run_node(node_id, inputs, scope, suffix))
            running[task] = node_id

        for node_id, followed in seeds.items():
            started.add(node_id)
            finish(node_id, followed)

        try:
            while running:
                done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: self._order.index(running[t])):
                    node_id = running.pop(task)
                    output, followed = task.result()
                    scope["nodes"][node_id] = {"output": output}
                    if not suffix:
                        self._completed.append(node_id)
                    finish(node_id, followed)
        except (NodeFailed, asyncio.CancelledError, CancelledError):
            await self._cancel(running)
            raise

    async def run_loop_body(self, loop_node: str, items: list, concurrency: int, scope: dict, suffix: str) -> list:
        """Run a for_each body once per item, at most ``concurrency`` at a time; the results in item order."""
        loop = self._loops[loop_node]
        results: list[Any] = [None] * len(items)
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(index: int, item: Any) -> None:
            async with gate:
                inner = {**scope, "nodes": dict(scope["nodes"]), "item": item, "index": index}
                inner["nodes"][loop_node] = {"output": item}
                await self._run_graph([loop_node, *loop["body"]], {loop_node: ["item"]}, inner, f"{suffix}#{index}")
                ends = {end: inner["nodes"].get(end, {}).get("output") for end in loop["ends"]}
                results[index] = next(iter(ends.values())) if len(ends) == 1 else ends

        tasks = [asyncio.create_task(one(i, item)) for i, item in enumerate(items)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return results

    async def _cancel(self, running: dict[asyncio.Task, str]) -> None:
        for task in running:
            task.cancel()
        if running:
            await workflow.wait(list(running))

    async def _run_node(self, node_id: str, inputs: dict[str, Any], scope: dict, suffix: str) -> tuple[Any, list[str]]:
        node = self._plan_nodes[node_id]
        spec = nodes.require(node["type"])
        where = f"node '{node_id}'" + (f" (iteration {suffix[1:].replace('#', '.')})" if suffix else "")
        try:
            config = self._resolve_config(node, scope)
            if node["kind"] == "control":
                assert spec.control is not None, "a control node's spec has control()"
                self._set_state(node_id, "running", suffix)
                result = await spec.control(ControlContext(self, node_id, scope, suffix), config, inputs)
                self._set_state(node_id, "success", suffix, ports=list(result.ports))
                return result.output, list(result.ports)
            output = await self._execute_activity(node_id + suffix, node, config, inputs)
            return output, [p.name for p in spec.outputs_for(node["config"])]
        except NodeError as exc:
            self._set_state(node_id, "failed", suffix, error=str(exc))
            raise NodeFailed(node_id, f"{where} ({node['type']}) failed: {exc}") from None
        except ActivityError as exc:
            raise NodeFailed(node_id, f"{where} ({node['type']}) failed: {_activity_message(exc)}", exc) from None

    async def _compensate(self, scope: dict) -> str:
        """Run the compensation of every node that succeeded, the last completed first, each once.
        A compensation that fails for good does not stop the others. Returns what the run's
        error adds: which compensations ran (nothing when none was due)."""
        done: list[str] = []
        failed: list[str] = []
        for node_id in reversed(self._completed):
            undo = self._plan_nodes[node_id].get("compensate")
            if not undo:
                continue
            node = self._plan_nodes[undo]
            self._set_state(node_id, "compensating", compensation=undo)
            try:
                config = self._resolve_config(node, scope)
                await self._execute_activity(undo, node, config, {node_id: scope["nodes"][node_id]["output"]})
            except NodeError as exc:
                message = str(exc)
            except ActivityError as exc:
                message = _activity_message(exc)
            else:
                self._set_state(node_id, "compensated", compensation=undo)
                done.append(f"{undo} (for '{node_id}')")
                continue
            self._set_state(
                node_id, "compensation_failed", compensation=undo, error=f"compensation '{undo}' failed: {message}"
            )
            failed.append(f"{undo} (for '{node_id}'): {message}")
        return (f"; compensated: {', '.join(done)}" if done else "") + (
            f"; compensation failed: {'; '.join(failed)}" if failed else ""
        )

    def _resolve_config(self, node: dict, scope: dict) -> dict[str, Any]:
        skip = set(node["expression_fields"])
        config = {}
        for key, value in node["config"].items():
            if key in skip:
                config[key] = value
                continue
            try:
                config[key] = expr.render(value, scope)
            except expr.ExprError as exc:
                raise NodeError(f"config.{key}: {exc}", retryable=False) from None
        return config

    async def _execute_activity(self, activity_id: str, node: dict, config: dict, inputs: dict) -> Any:
        info = workflow.info()
        call = NodeCall(
            run_id=info.workflow_id,
            node_id=activity_id,
            node_type=node["type"],
            config=config,
            inputs=inputs,
            idempotency_key=f"{info.workflow_id}:{activity_id}",
            flow_id=self._run_meta.get("flow_id"),
            version=self._run_meta.get("version"),
            tenant=self._run_meta.get("tenant") or "default",
        )
        heartbeat = node.get("heartbeat_seconds")
        return await workflow.execute_activity(
            node["type"],
            call,
            activity_id=activity_id,
            task_queue=node.get("task_queue") or self._type_queues.get(node["type"]) or info.task_queue,
            start_to_close_timeout=timedelta(seconds=node["timeout_seconds"]),
            heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None,
            retry_policy=retry_policy(node["retry"]),
        )

    def _set_state(self, node_id: str, status: str, suffix: str = "", **info: Any) -> None:
        state = {"status": status, "at": workflow.now().isoformat(), **info}
        if suffix:
            state["iteration"] = suffix[1:].replace("#", ".")
        self._states[node_id] = state
        workflow.upsert_memo({NODE_MEMO_PREFIX + node_id: state})


def _activity_message(exc: ActivityError) -> str:
    cause = exc.cause
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
    if exc.retry_state is not None and cause is not None and "timeout" in type(cause).__name__.lower():
        message = f"timed out ({cause})"
    return message


def workflow_runner():
    """The sandbox the worker runs FlowRun in. FlowOrchestrator's own modules are passed through:
    they are deterministic where the workflow uses them, and importing them once per process
    instead of once per workflow run keeps each run cheap."""
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "floworch_server", "jsonschema", "httpx", "pydantic"
        )
    )
