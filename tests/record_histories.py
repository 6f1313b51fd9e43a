"""Record the Temporal histories that the replay test checks the interpreter against.

    .venv/bin/python tests/record_histories.py [name ...]

With names (keys of FLOWS), only those histories are recorded: a new shape joins the gate
without re-recording the histories runs in flight were made with. Run it only when a change to the interpreter is meant to change what it does, and say so in
the commit: the replay test exists to catch changes that would break runs already in flight.
It starts its own embedded services in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from conftest import flow_doc  # noqa: E402

OUT = HERE / "data" / "histories"
T = {"id": "start", "type": "trigger.manual"}


def tf(node_id, output):
    return {"id": node_id, "type": "transform", "config": {"output": output}}


FLOWS: dict[str, tuple[Any, ...]] = {
    "sequential": (
        [T, tf("a", "{{ input.name }}"), tf("b", "Hello, {{ nodes.a.output }}")],
        [("start", "a"), ("a", "b")],
        {"name": "Ada"},
    ),
    "if_else": (
        [
            T,
            {"id": "big", "type": "control.if", "config": {"condition": "input.amount > 100"}},
            tf("yes", "big"),
            tf("no", "small"),
        ],
        [("start", "big"), ("big", "true", "yes"), ("big", "false", "no")],
        {"amount": 500},
    ),
    "parallel_join": (
        [
            T,
            {"id": "fan", "type": "control.parallel"},
            tf("a", 1),
            tf("b", 2),
            tf("join", "{{ nodes.a.output + nodes.b.output }}"),
        ],
        [("start", "fan"), ("fan", "branches", "a"), ("fan", "branches", "b"), ("a", "join"), ("b", "join")],
        {},
    ),
    "approval": (
        [T, {"id": "review", "type": "control.approval"}, tf("pay", "paid"), tf("refuse", "refused")],
        [("start", "review"), ("review", "approved", "pay"), ("review", "rejected", "refuse")],
        {},
    ),
    "delay": (
        [T, {"id": "wait", "type": "control.delay", "config": {"seconds": 0.5}}, tf("after", "x")],
        [("start", "wait"), ("wait", "after")],
        {},
    ),
    "retry": (
        [
            T,
            {
                "id": "flaky",
                "type": "test.fail",
                "config": {"fail_times": 1},
                "policy": {"retry": {"initial_interval_seconds": 0.2}},
            },
        ],
        [("start", "flaky")],
        {},
    ),
    "failure": (
        [T, {"id": "bad", "type": "test.fail", "config": {"fail_times": 1, "permanent": True}}],
        [("start", "bad")],
        {},
    ),
    # "c" fails for good: "b" is compensated by a compensation that fails, then "a" by one
    # that succeeds on its second attempt.
    "compensation": (
        [
            T,
            {**tf("a", "A-{{ input.n }}"), "compensate": "undo_a"},
            {**tf("b", "B"), "compensate": "undo_b"},
            {"id": "c", "type": "test.fail", "config": {"fail_times": 1, "permanent": True}},
            {"id": "undo_b", "type": "test.fail", "config": {"fail_times": 1, "permanent": True}},
            {
                "id": "undo_a",
                "type": "test.fail",
                "config": {"fail_times": 1, "output": "undid"},
                "policy": {"retry": {"initial_interval_seconds": 0.2}},
            },
        ],
        [("start", "a"), ("a", "b"), ("b", "c")],
        {"n": 1},
    ),
    "reused": (
        [T, tf("a", "{{ input.name }}"), tf("b", "Hello, {{ nodes.a.output }}")],
        [("start", "a"), ("a", "b")],
        {"name": "Ada"},
        {"reuse": {"a": {"output": "Grace", "from_run": "run-recorded"}}},
    ),
}


async def record(names: list[str]) -> None:
    from floworch_server.service import FlowService
    from floworch_server.settings import Settings

    service = await FlowService.connect(Settings.from_env())
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (nodes, edges, run_input, *options) in FLOWS.items():
        if names and name not in names:
            continue
        record = service.create_workflow(flow_doc(nodes, edges, name), by="recorder")
        await service.publish(record["id"], by="recorder")
        run_id = (
            await service.start_run(record["id"], input=run_input, by="recorder", **(options[0] if options else {}))
        )["run_id"]
        if name == "approval":
            while True:
                run = await service.get_run(run_id)
                if any(n["node"] == "review" and n["status"] == "waiting" for n in run["nodes"]):
                    break
                await asyncio.sleep(0.1)
            await service.approve(run_id, "review", by="ada")
        handle = service.handle(run_id)
        with contextlib.suppress(Exception):  # the failure flow fails on purpose
            await handle.result()
        history = await handle.fetch_history()
        (OUT / f"{name}.json").write_text(history.to_json())
        print(f"recorded {name}: {len(history.events)} events")


def main() -> None:
    from floworch_server.settings import Settings
    from floworch_server.supervisor import Supervisor

    names = sys.argv[1:]
    unknown = sorted(set(names) - set(FLOWS))
    if unknown:
        sys.exit(f"unknown history name(s): {', '.join(unknown)}; known: {', '.join(FLOWS)}")
    os.environ["FLOWORCH_DATA_DIR"] = tempfile.mkdtemp(prefix="floworch-record-")
    with Supervisor(Settings.from_env()):
        asyncio.run(record(names))


if __name__ == "__main__":
    main()
