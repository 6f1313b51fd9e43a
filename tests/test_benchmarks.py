"""The engine benchmark runs end to end and reports every figure.

Tiny counts against the session's Temporal dev server: this checks that the measurements work
and the summary is complete, never how fast anything is (timings on a shared CI machine say
nothing reliable, and `python -m benchmarks.engine` is where the figures come from).
"""

from __future__ import annotations

import json

from benchmarks import engine
from floworch_server import temporal
from floworch_server.settings import Settings

TINY = engine.Counts(runs=2, concurrent=5, rounds=1, warmup=1, step_runs=2)


async def test_the_engine_benchmark_reports_every_figure_as_a_positive_number():
    client = await temporal.connect(Settings.from_env())
    main = await engine.measure(client, TINY)
    # The session's server stands in for the stock-settings one: what is checked here is that
    # the step cost is measured and reported, not what the tuning buys.
    default = await engine.measure_step_cost(client, TINY.step_runs, warmup=0)

    summary = engine.summarize(main, default)

    missing = [key for key in engine.SUMMARY_KEYS if key not in summary]
    assert not missing, f"summary lacks {missing}"
    not_positive = {k: summary[k] for k in engine.SUMMARY_KEYS if not (isinstance(summary[k], (int, float)) and summary[k] > 0)}
    assert not not_positive, f"figures that are not positive numbers: {not_positive}"
    assert json.loads(json.dumps(summary)) == summary
    assert all(len(samples) == TINY.runs for samples in main["samples"].values())
    assert "latency, 10 nodes" in engine.table(summary, main)
