"""Tenants on the real Temporal dev server: a run is its tenant's from start to finish.

Two tenants share one deployment (one Temporal namespace, one store, one worker). A run carries
its tenant in Temporal's search attributes and memo; every read of it checks that, its node
activities use only their tenant's integrations, and their log lines land in their tenant's rows.
"""

from __future__ import annotations

import uuid

import pytest

from conftest import finished, flow_doc, nodes_by_id
from floworch_server.errors import NotFound
from floworch_server.integrations import Integrations
from floworch_server.temporal import SEARCH_ATTRIBUTES

pytestmark = pytest.mark.timeout(120)

LOGGING_FLOW = [
    {"id": "start", "type": "trigger.manual"},
    {"id": "shape", "type": "transform", "config": {"output": "{{ input }}"}},
]


async def start(service, nodes: list[dict], edges: list, input=None) -> dict:
    record = service.create_workflow(flow_doc(nodes, edges), by="tester")
    await service.publish(record["id"], by="tester")
    return await finished(service, (await service.start_run(record["id"], input=input, by="tester"))["run_id"])


async def test_a_tenants_run_is_invisible_to_another_tenant_everywhere(service):
    acme, globex = (
        service.for_tenant(f"acme-{uuid.uuid4().hex[:6]}"),
        service.for_tenant(f"globex-{uuid.uuid4().hex[:6]}"),
    )
    run = await start(acme, LOGGING_FLOW, [("start", "shape")], input={"n": 1})
    assert run["status"] == "success" and run["tenant"] == acme.tenant

    desc = await service.handle(run["run_id"]).describe()
    assert desc.typed_search_attributes.get(SEARCH_ATTRIBUTES["FloworchTenant"]) == acme.tenant

    for call in (
        lambda: globex.get_run(run["run_id"]),
        lambda: globex.trace(run["run_id"]),
        lambda: globex.inspect(run["run_id"], "shape"),
        lambda: globex.error(run["run_id"]),
        lambda: globex.result(run["run_id"]),
        lambda: globex.cancel(run["run_id"], by="mallory"),
        lambda: globex.approve(run["run_id"], "shape", by="mallory"),
    ):
        with pytest.raises(NotFound, match="no run with id"):
            await call()
    assert run["run_id"] not in [r["run_id"] for r in await globex.list_runs(limit=1000)]
    assert run["run_id"] in [r["run_id"] for r in await acme.list_runs(limit=1000)]
    # The deployment's sync wrote the run into its tenant's rows, not the deployment's.
    assert service.store.get_run(run["run_id"]) is None
    assert acme.store.get_run(run["run_id"])["tenant"] == acme.tenant
    with pytest.raises(NotFound):
        globex.get_workflow(run["workflow_id"])


async def test_a_node_finds_only_its_own_tenants_integrations_and_logs_there(service):
    acme = service.for_tenant(f"acme-{uuid.uuid4().hex[:6]}")
    name = f"slack-{uuid.uuid4().hex[:6]}"
    # Stored in the deployment's tenant only, pointing at nothing that answers.
    Integrations.from_settings(service.settings, store=service.store).add(
        name, "slack", {"access_token": "tok-default"}, by="tester", settings={"base_url": "http://127.0.0.1:9/api"}
    )
    node = {
        "id": "call",
        "type": "action.slack",
        "config": {"integration": name, "channel": "#x", "text": "hi"},
        "policy": {"retry": {"max_attempts": 1}},
    }

    theirs = await start(acme, [LOGGING_FLOW[0], node], [("start", "call")])
    assert theirs["status"] == "failed"
    assert f"no integration named '{name}'" in nodes_by_id(theirs)["call"]["error"]
    # The deployment's own run finds it (and then fails to reach the address: another error).
    ours = await start(service, [LOGGING_FLOW[0], node], [("start", "call")])
    assert "no integration named" not in (nodes_by_id(ours)["call"]["error"] or "")

    # The failing node's log lines are the run's tenant's.
    assert acme.store.list_logs(theirs["run_id"]) != []
    assert service.store.list_logs(theirs["run_id"]) == []
