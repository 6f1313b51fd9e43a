"""The baseline: a hand-written Temporal workflow of the same shape as the benchmarked flows.

It runs ``steps`` activities one after another, each building a small dict from the previous
result, which is what a chain of ``transform`` nodes does. It lives in its own module because
the workflow sandbox imports a workflow by its module name, which ``__main__`` is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

WORKFLOW_TYPE = "NativeChain"
ACTIVITY_TYPE = "native_step"

# The same policy a compiled `transform` node gets from its spec defaults, so that neither side
# pays for a cheaper or dearer policy than the other.
STEP_TIMEOUT = timedelta(seconds=10)
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
)


@dataclass
class ChainInput:
    steps: int
    input: dict[str, Any]


@dataclass
class StepInput:
    step: int
    previous: dict[str, Any]


@activity.defn(name=ACTIVITY_TYPE)
async def native_step(call: StepInput) -> dict[str, Any]:
    return {"step": call.step, "value": call.previous["value"]}


@workflow.defn(name=WORKFLOW_TYPE)
class NativeChain:
    @workflow.run
    async def run(self, chain: ChainInput) -> dict[str, Any]:
        previous = chain.input
        for step in range(1, chain.steps + 1):
            previous = await workflow.execute_activity(
                native_step,
                StepInput(step, previous),
                activity_id=f"t{step}",
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        return previous
