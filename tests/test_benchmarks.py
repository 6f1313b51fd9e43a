"""The benchmarks run end to end and report every figure.

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
    not_positive = {
        k: summary[k] for k in engine.SUMMARY_KEYS if not (isinstance(summary[k], (int, float)) and summary[k] > 0)
    }
    assert not not_positive, f"figures that are not positive numbers: {not_positive}"
    assert json.loads(json.dumps(summary)) == summary
    assert all(len(samples) == TINY.runs for samples in main["samples"].values())
    assert "latency, 10 nodes" in engine.table(summary, main)


def test_the_security_benchmark_quick_run_reports_both_ratios_and_the_samples_behind_them():
    """`python -m benchmarks.security --quick` end to end: its own Temporal, real Jupyter servers
    with and without the checks and, when reachable, PostgreSQL schemas with and without RLS. It
    checks the summary is complete (and the benchmark's own check that ours refuses a forged
    token its switch lets through), never how fast anything is."""
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks import security

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.security", "--quick"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    quick = security.QUICK

    assert summary["auth_overhead_ratio"] > 0 and summary["target_ratio"] == security.TARGET_RATIO
    for route in security.ROUTES:
        assert summary[f"auth_{route}_ours_samples"] == summary[f"auth_{route}_baseline_samples"] == quick.route_rounds
        assert summary[f"auth_{route}_ours_median_ms"] > 0 and summary[f"auth_{route}_baseline_p95_ms"] > 0
    assert "authentication, SQLite store (baseline: checks off)" in done.stdout
    if "postgres" in summary["notes"]:
        assert summary["rls_overhead_ratio"] is None and "PostgreSQL part skipped" in done.stdout
        return
    assert summary["rls_overhead_ratio"] > 0 and summary["rls_store_overhead_ratio"] > 0
    for route in security.ROUTES:
        assert summary[f"rls_{route}_ours_samples"] == summary[f"rls_{route}_baseline_samples"] == quick.pg_route_rounds
        assert summary[f"rls_store_{route}_ours_samples"] == quick.store_rounds
    assert all(summary[f"rls_store_{op}_baseline_median_ms"] > 0 for op in security.STORE_OPS)


def test_the_debugging_benchmark_quick_run_times_rerun_resume_and_full_from_failed_runs():
    """`python -m benchmarks.debug --quick` end to end on its own Temporal and worker: every round
    a run fails at its charge, then the charge is re-run here with the fix, and the run is retried
    from the failed node and from the start. The benchmark itself refuses to report when a re-run
    or retry does not succeed, or when the resumed run calls the earlier steps again. Checked
    here: the summary is complete, never how fast anything is."""
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks import debug

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.debug", "--quick"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    assert summary["samples"] == debug.QUICK.rounds and summary["earlier_steps"] == len(debug.EARLIER)
    figures = [
        "rerun_node_ms",
        "resume_vs_full_ratio",
        "rerun_node_p95_ms",
        "resume_ms",
        "resume_p95_ms",
        "full_ms",
        "full_p95_ms",
    ]
    not_positive = {
        k: summary.get(k) for k in figures if not (isinstance(summary.get(k), (int, float)) and summary[k] > 0)
    }
    assert not not_positive, f"figures missing or not positive: {not_positive}"
    # The ratio is of the medians (the reported ones are rounded to 0.1 ms).
    assert abs(summary["resume_vs_full_ratio"] - summary["resume_ms"] / summary["full_ms"]) < 0.002
    assert (
        "re-run of the failed node here (rerun_here)" in done.stdout
        and "resumed run completed (retry mode=resume)" in done.stdout
    )


def test_the_scale_benchmark_quick_run_measures_1_2_and_3_workers_and_loses_no_run_of_the_load():
    """`python -m benchmarks.scale --quick` end to end: its own Temporal, 1 then 2 then 3 worker
    processes, then 500 runs at once. Checked here: every figure is reported, the ratios are of
    the throughputs reported, and every run of the load completed (a lost run is what a user
    would notice); never how fast anything is."""
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks import scale

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--quick"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    not_positive = {
        k: summary.get(k)
        for k in scale.SUMMARY_KEYS
        if not (isinstance(summary.get(k), (int, float)) and summary[k] > 0)
    }
    assert not not_positive, f"figures missing or not positive: {not_positive}"
    for n in (2, 3):
        assert (
            abs(
                summary[f"throughput_ratio_{n}_1"]
                - summary[f"throughput_workers_{n}"] / summary["throughput_workers_1"]
            )
            < 0.01
        )
    assert summary["load_runs"] == scale.QUICK.load and summary["load_workers"] == 3
    assert isinstance(summary["runs_lost"], int) and summary["runs_lost"] == 0, summary["load_lost_examples"]
    assert summary["load_completed"] == summary["load_runs"]
    assert summary["load_p99_ms"] >= summary["load_p50_ms"]
    assert f"load: {scale.QUICK.load} runs at once with 3 workers: {scale.QUICK.load} completed, 0 lost" in done.stdout
