"""Determinism guard: stored histories of representative runs replay against the current
interpreter. A change to FlowRun that would break runs already in flight fails here.
(Histories are recorded by tests/record_histories.py.)"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from floworch_server.interpreter import FlowRun, workflow_runner

HISTORIES = sorted((Path(__file__).parent / "data" / "histories").glob("*.json"))


def test_histories_are_stored_for_every_control_construct_compensation_and_reuse():
    assert {p.stem for p in HISTORIES} >= {
        "sequential",
        "if_else",
        "parallel_join",
        "approval",
        "delay",
        "retry",
        "failure",
        "compensation",
        "reused",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_stored_history_replays_against_the_current_interpreter(path: Path):
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[FlowRun], workflow_runner=workflow_runner())
    await replayer.replay_workflow(history)


@workflow.defn(name="FlowRun")
class ReorderedFlowRun:
    """An interpreter that waits on a timer before anything else: not what the history did."""

    @workflow.run
    async def run(self, request) -> dict:
        await workflow.sleep(timedelta(seconds=1))
        return {}


async def test_replay_catches_an_interpreter_that_behaves_differently():
    history = WorkflowHistory.from_json(
        "replay-sequential", (Path(__file__).parent / "data" / "histories" / "sequential.json").read_text()
    )
    replayer = Replayer(workflows=[ReorderedFlowRun], workflow_runner=workflow_runner())
    with pytest.raises(workflow.NondeterminismError):
        await replayer.replay_workflow(history)
