"""SLO metrics and the dashboard, specified by behaviour.

Store metrics are checked against values worked out by hand over a seeded set of runs and node
timings, on SQLite and on the real PostgreSQL. Node timings are checked on a real run through the
session's Temporal; queue depth and worker health against the session's worker; the Prometheus
endpoint on a real Jupyter server. No test asserts how fast anything is: benchmarks/observe.py
measures that.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from traitlets.config import Config

from conftest import finished
from floworch_server import metrics
from support.metrics_seed import BUDGET_CONSUMED, BURN, HTTP, MS, TRANSFORM, H, seed, session_worker_polling

pytest_plugins = ["pytest_jupyter.jupyter_server"]

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # "now" of the seeded store


def approx_rows(frame, columns):
    return [
        tuple(pytest.approx(v) if isinstance(v, float) else v for v in row)
        for row in frame[columns].itertuples(index=False)
    ]


# ---------------------------------------------------------------------- store metrics
def test_success_rate_leaves_cancelled_runs_out_and_buckets_by_end_time(store):
    seed(store, T0)
    day = metrics.success_rate(store, T0 - 24 * H, T0)
    assert day[["success", "failed", "cancelled", "total"]].iloc[0].tolist() == [1998, 2, 2, 2000]
    assert day["success_rate"].iloc[0] == pytest.approx(0.999)

    hourly = metrics.success_rate(store, T0 - 2 * H, T0, bucket="1h")
    assert hourly["bucket"].tolist() == [T0 - 2 * H, T0 - H]
    assert hourly[["success", "failed", "cancelled", "total"]].values.tolist() == [[199, 1, 0, 200], [9, 1, 2, 10]]
    assert hourly["success_rate"].tolist() == pytest.approx([0.995, 0.9])

    # An hour with no finished runs has no rate (NaN), rather than 0 % or 100 %.
    quiet = metrics.success_rate(store, T0 + H, T0 + 2 * H, bucket="30m")
    assert quiet["total"].tolist() == [0, 0] and quiet["success_rate"].isna().all()


def test_burn_rates_and_error_budget_against_the_default_slo(store):
    seed(store, T0)
    burn, budget = metrics.slo_report(store, until=T0)
    assert (
        approx_rows(burn, ["window", "success", "failed", "total", "error_rate", "burn_rate", "threshold", "alerting"])
        == BURN
    )
    assert burn["since"].tolist() == [T0 - H, T0 - 6 * H, T0 - 24 * H, T0 - 72 * H]
    assert (budget["success"], budget["failed"], budget["total"]) == (10998, 2, 11000)
    assert budget["budget_consumed"] == pytest.approx(BUDGET_CONSUMED)
    assert budget["budget_remaining"] == pytest.approx(1 - BUDGET_CONSUMED)
    assert budget["allowed_failures"] == pytest.approx(5.5)
    assert metrics.error_budget(store, until=T0) == budget
    assert metrics.burn_rates(store, until=T0).equals(burn)

    # A looser SLO: 99 % allows 1 %, so the last hour burns at 10x and pages no one.
    loose = metrics.burn_rates(store, until=T0, slo=99)
    assert loose["burn_rate"].tolist() == pytest.approx([10.0, 0.2, 0.1, 0.04])
    assert loose["alerting"].tolist() == [False, False, False, False]


def test_latency_percentiles_per_node_type(store):
    seed(store, T0)
    found = metrics.latency(store, T0 - 24 * H, T0).set_index("node_type")
    assert list(found.index) == ["http", "transform"]  # the timer wait is not an activity
    assert found.loc["http"].to_dict() == pytest.approx(HTTP)
    assert found.loc["transform"].to_dict() == pytest.approx(TRANSFORM)

    every_kind = metrics.latency(store, T0 - 24 * H, T0, kind=None).set_index("node_type")
    assert every_kind.loc["control.delay", "p99_ms"] == pytest.approx(5000)
    three_days = metrics.latency(store, T0 - 72 * H, T0, node_type="http")
    assert three_days["count"].tolist() == [11] and three_days["max_ms"].tolist() == [99_999]
    assert metrics.latency(store, T0 + H, T0 + 2 * H).empty


def test_throughput_counts_runs_by_start_bucket_and_status(store):
    seed(store, T0)
    found = metrics.throughput(store, T0 - 2 * H, T0, bucket="1h")
    assert found.columns.tolist() == ["bucket", "queued", "running", "success", "failed", "cancelled", "total"]
    assert found["bucket"].tolist() == [T0 - 2 * H, T0 - H]
    assert found.drop(columns="bucket").values.tolist() == [[0, 0, 199, 1, 0, 200], [0, 1, 9, 1, 2, 13]]
    by_end = metrics.throughput(store, T0 - 2 * H, T0, bucket="1h", by="end")
    assert by_end["total"].tolist() == [200, 12]  # the running run has not ended


def test_the_dashboard_figure_shows_the_hand_computed_values(store):
    from floworch.dashboard import PANELS, collect, figure

    seed(store, T0)
    data = collect(store, T0 - 2 * H, T0, bucket="1h")
    fig = figure(data)
    traces = {trace.name: trace for trace in fig.data}

    assert list(traces["success rate"].y) == pytest.approx([99.5, 90.0])
    assert list(traces["SLO 99.95 %"].y) == [99.95, 99.95]
    assert list(traces["burn rate"].x) == ["1h", "6h", "24h", "72h"]
    assert list(traces["burn rate"].y) == pytest.approx([b[5] for b in BURN])
    assert list(traces["alert threshold"].y) == [14.4, 6.0, 3.0, 1.0]
    assert list(traces["p95"].x) == ["http", "transform"]
    assert list(traces["p95"].y) == pytest.approx([955.0, 18.5])
    assert list(traces["p99"].y) == pytest.approx([991.0, 19.7])
    assert list(traces["success"].y) == [199, 9] and list(traces["running"].y) == [0, 1]
    titles = [a.text for a in fig.layout.annotations]
    assert titles[1] == f"{PANELS[1]} · {(1 - BUDGET_CONSUMED) * 100:.1f} % of 30d budget left"
    assert "Temporal not reachable" in titles[4]  # no live data was given


def test_node_timings_are_stored_once_per_run_and_validated(store):
    store = store.for_tenant("acme")
    store.upsert_run(
        {
            "run_id": "r",
            "workflow_id": "wf-1",
            "tenant": "acme",
            "status": "success",
            "start_time": T0 - H,
            "end_time": T0,
        }
    )
    assert store.runs_needing_timings(["r", "unknown"]) == ["r"]
    timings = [
        {
            "node": "a",
            "node_type": "http",
            "kind": "activity",
            "started": T0 - H,
            "ended": T0 - H + 250 * MS,
            "status": "success",
        }
    ]
    assert store.add_node_timings("r", timings) == 1
    assert store.add_node_timings("r", timings) == 1  # again: replaced, not doubled
    [row] = store.list_node_timings("r")
    assert (row["duration_ms"], row["workflow_id"], row["tenant"], row["attempt"]) == (250.0, "wf-1", "acme", 1)
    assert store.get_run("r")["timings_at"] is not None and store.runs_needing_timings(["r"]) == []
    with pytest.raises(ValueError, match="kind must be one of activity, timer, approval, control"):
        store.add_node_timings("r", [{**timings[0], "kind": "trigger"}])


# ---------------------------------------------------------------------- a real run
async def test_a_finished_runs_node_timings_are_recorded_once_by_sync(service, published):
    flow = await published(
        [
            {"id": "start", "type": "trigger.manual"},
            {"id": "shape", "type": "transform", "config": {"output": {"n": 1}}},
            {"id": "wait", "type": "control.delay", "config": {"seconds": 0.2}},
            {"id": "done", "type": "transform", "config": {"output": "ok"}},
        ],
        [("start", "shape"), ("shape", "wait"), ("wait", "done")],
    )
    run_id = (await service.start_run(flow, by="t"))["run_id"]
    await finished(service, run_id)

    await service.sync_runs()
    rows = service.store.list_node_timings(run_id)
    assert [(r["node"], r["node_type"], r["kind"], r["status"]) for r in rows] == [
        ("shape", "transform", "activity", "success"),
        ("wait", "control.delay", "timer", "success"),
        ("done", "transform", "activity", "success"),
    ]
    assert all(r["workflow_id"] == flow and r["duration_ms"] >= 0 for r in rows)
    assert rows[1]["duration_ms"] >= 200  # the timer waited its 0.2 s
    recorded_at = service.store.get_run(run_id)["timings_at"]
    assert recorded_at is not None

    await service.sync_runs()  # seen final again: history is not read a second time
    assert [r["id"] for r in service.store.list_node_timings(run_id)] == [r["id"] for r in rows]
    assert service.store.get_run(run_id)["timings_at"] == recorded_at


# ---------------------------------------------------------------------- live: task queues and workers
async def test_queue_depth_and_worker_health_show_the_session_worker(service, supervisor):
    queue = service.settings.task_queue
    queues, ours = await session_worker_polling(service, supervisor)
    mine = queues[queues["task_queue"] == queue].set_index("type")
    assert set(mine.index) == {"workflow", "activity"}
    assert (mine["pollers"] >= 1).all() and (mine["backlog"] >= 0).all()
    assert ours["healthy"].all() and (ours["seconds_since_poll"] < metrics.POLLER_STALE_AFTER_S).all()
    assert ours["last_access_time"].dt.tz is not None
    assert list((await service.queue_depth()).columns) == metrics.QUEUE_COLUMNS
    assert list((await service.workers()).columns) == metrics.WORKER_COLUMNS


# ---------------------------------------------------------------------- Prometheus
def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_prometheus_text_format_escapes_labels_and_writes_special_numbers():
    text = metrics.format_prometheus(
        [
            metrics.Family("x_total", "counter", "What x counts.\nSecond line", [("", {"q": 'a"b\\c\nd'}, 3)]),
            metrics.Family(
                "y", "summary", "Y.", [("", {"quantile": "0.5"}, float("nan")), ("_sum", {}, 1.5), ("_count", {}, 2)]
            ),
        ]
    )
    assert text == (
        "# HELP x_total What x counts.\\nSecond line\n"
        "# TYPE x_total counter\n"
        'x_total{q="a\\"b\\\\c\\nd"} 3\n'
        "# HELP y Y.\n"
        "# TYPE y summary\n"
        'y{quantile="0.5"} NaN\n'
        "y_sum 1.5\n"
        "y_count 2\n"
    )


def test_prometheus_metrics_of_the_seeded_store(store):
    seed(store, T0)
    text = metrics.format_prometheus(metrics.store_families(store, now=T0))
    found = samples(text)
    assert "# TYPE floworch_activity_duration_seconds summary" in text
    assert {s: found[f'floworch_runs{{status="{s}"}}'] for s in ("queued", "running", "success", "failed", "cancelled")} == {
        "queued": 0, "running": 1, "success": 10998, "failed": 7, "cancelled": 2,
    }  # fmt: skip
    # Quantiles over the last hour; _sum and _count over every recorded attempt.
    assert found['floworch_activity_duration_seconds{node_type="http",quantile="0.95"}'] == pytest.approx(0.955)
    assert found['floworch_activity_duration_seconds{node_type="http",quantile="0.99"}'] == pytest.approx(0.991)
    assert found['floworch_activity_duration_seconds_count{node_type="http"}'] == 11
    assert found['floworch_activity_duration_seconds_sum{node_type="http"}'] == pytest.approx(5.5 + 99.999)
    assert found['floworch_slo_burn_rate{window="1h"}'] == pytest.approx(200)
    assert found["floworch_slo_error_budget_remaining"] == pytest.approx(1 - BUDGET_CONSUMED)


@pytest.fixture
def jp_server_config():
    return Config({"ServerApp": {"jpserver_extensions": {"floworch_ext": True}}})


async def test_the_metrics_endpoint_serves_prometheus_text_to_authenticated_clients(
    jp_serverapp, jp_fetch, jp_base_url, service, supervisor
):
    from tornado.httpclient import HTTPClientError

    await session_worker_polling(service, supervisor)
    reply = await jp_fetch("floworch", "metrics")
    assert reply.code == 200
    assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = reply.body.decode()
    found = samples(text)
    assert found["floworch_temporal_up"] == 1
    assert found['floworch_worker_pollers{task_queue="floworch",type="activity"}'] >= 1
    assert 'floworch_task_queue_backlog{task_queue="floworch",type="workflow"}' in found
    assert any(re.match(r'floworch_runs\{status="success"\}', key) for key in found)

    with pytest.raises(HTTPClientError) as refused:
        await jp_fetch("floworch", "metrics", headers={"Authorization": "token not-the-token"})
    assert refused.value.code == 403


# ---------------------------------------------------------------------- the notebook API
def test_the_kernel_dashboard_is_a_range_dropdown_above_a_figure_widget():
    import ipywidgets
    import plotly.graph_objects as go

    import floworch as fo
    from floworch.dashboard import PANELS

    box = fo.dashboard("6h", refresh=False)
    dropdown, fig = box.children[0].children[0], box.children[1]
    assert isinstance(dropdown, ipywidgets.Dropdown) and isinstance(fig, go.FigureWidget)
    assert dropdown.value == "6h" and box.dashboard.thread is None
    assert [a.text.split(" · ")[0] for a in fig.layout.annotations] == list(PANELS)
    assert {"success rate", "burn rate", "p95", "p99", "backlog", "since last poll"} <= {t.name for t in fig.data}

    before = fig.layout.title.text
    dropdown.value = "7d"  # a new range queries the store again
    assert box.dashboard.status.value == "" and fig.layout.title.text != before

    assert list(fo.metrics.success_rate("1h").columns) == metrics.SUCCESS_COLUMNS
    assert list(fo.metrics.burn_rates()["window"]) == ["1h", "6h", "24h", "72h"]
    assert list(fo.metrics.latency("1h").columns) == metrics.LATENCY_COLUMNS
    assert list(fo.metrics.throughput("1h").columns) == metrics.THROUGHPUT_COLUMNS
    assert list(fo.metrics.queue().columns) == metrics.QUEUE_COLUMNS
    assert list(fo.metrics.workers().columns) == metrics.WORKER_COLUMNS


# ---------------------------------------------------------------------- the benchmark's dashboard half
def test_the_observe_benchmark_measures_the_dashboard_and_reports_every_figure(tmp_path):
    """Tiny sizes: this checks that the measurement runs and the summary is complete, not speed."""
    import json

    from benchmarks import observe

    run_rows, timing_rows = observe.generate(T0, 300)
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    observe.load(url, run_rows, timing_rows)
    measured = observe.measure_dashboard(url, T0, repeats=2)
    finished = sum(1 for r in run_rows if r["status"] != "running")
    assert measured["finished_runs"] == finished and measured["latency_types"] == len(observe.NODE_TYPES)
    assert len(measured["samples"]) == 2 and set(measured["parts"]) == {
        "success_rate",
        "throughput",
        "latency",
        "slo_report",
    }

    traced = {
        "samples": {k: [1.0, 2.0] for k in ("fetch", "segments", "figure", "total")},
        "events": 10,
        "activities": 3,
        "figure_bytes": 2048,
        "run_s": 1.0,
    }
    tail = {"samples": [5.0, 10.0, 20.0]}
    summary = observe.summarize(traced, {"sqlite": measured, "postgres": {"skipped": "not reachable"}}, tail)
    assert json.loads(json.dumps(summary)) == summary
    assert (
        summary["dashboard_100k_ms_postgres"] is None
        and summary["notes"]["dashboard_100k_ms_postgres"] == "not reachable"
    )
    assert (summary["log_tail_p99_ms"], summary["log_tail_p50_ms"], summary["trace_500_ms"]) == (20.0, 10.0, 1.5)
    assert "dashboard, 100000 runs, postgres" in observe.table(
        summary, traced, {"sqlite": measured, "postgres": {"skipped": "not reachable"}}
    )
