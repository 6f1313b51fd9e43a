"""The document pipeline end to end: a signed webhook delivery -> local OCR -> extraction by a
language model into a checked JSON object -> a database insert -> a Slack message.

The model and Slack are local servers speaking the OpenAI and Slack protocols
(notebooks/demo_services.py), reached through the real OpenAI SDK and the Slack connector; OCR,
the database, the Jupyter server and Temporal are the real ones."""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from traitlets.config import Config

from conftest import finished
from floworch_server import blobs
from floworch_server.integrations import Integrations
from floworch_server.webhooks import sign

sys.path.insert(0, str(Path(__file__).parents[1] / "notebooks"))
import demo_services

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(180)
FLOW = Path(__file__).parents[1] / "notebooks" / "invoice-pipeline.flow"
TABLE = """CREATE TABLE invoices (
    id INTEGER PRIMARY KEY, number TEXT NOT NULL, vendor TEXT NOT NULL, total REAL NOT NULL,
    invoice_date TEXT NOT NULL, document TEXT, run_key TEXT UNIQUE)"""


@pytest.fixture
def jp_server_config():
    return Config({"ServerApp": {"jpserver_extensions": {"floworch_ext": True}}})


@pytest.fixture
def outside_world(service, tmp_path):
    model, slack = demo_services.model_server(), demo_services.slack_server()
    db = tmp_path / "invoices.db"
    with sqlite3.connect(db) as conn:
        conn.execute(TABLE)
    integrations = Integrations.from_settings(service.settings, store=service.store)
    integrations.add(
        "invoice-model", "openai-compatible", {"api_key": "local-key"}, by="t", settings={"base_url": model.url + "/v1"}
    )
    integrations.add("slack-demo", "slack", {"access_token": "xoxb-demo"}, by="t", settings={"base_url": slack.url})
    integrations.add("invoices-db", "database", {"url": f"sqlite:///{db}"}, by="t")
    yield model, slack, db
    model.close()
    slack.close()


async def test_a_document_posted_to_the_webhook_is_read_extracted_stored_and_announced(
    service, outside_world, jp_fetch, jp_http_port, tmp_path
):
    model, slack, db = outside_world
    document = json.loads(FLOW.read_text())
    document["meta"]["id"] = str(uuid.uuid4())  # its own workflow, apart from the notebook's
    flow = service.create_workflow(document, by="t")["id"]
    await service.publish(flow, by="t")
    [hook] = json.loads((await jp_fetch("floworch", "api", "workflows", flow, "webhooks")).body)

    image = demo_services.draw_invoice(
        tmp_path / "invoice.png", number="INV-2041", vendor="Acme Tools Ltd", total=1234.50, date="2026-11-02"
    )
    blob = blobs.put(image.read_bytes(), "invoice.png", settings=service.settings)
    body = json.dumps({"document": blob}).encode()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp_http_port}") as client:
        answer = await client.post(hook["path"], content=body, headers=sign(hook["secret"], body))
    assert answer.status_code == 202, answer.text

    run = await finished(service, answer.json()["run_id"], timeout=150)
    assert run["status"] == "success", run.get("error")
    assert [n["status"] for n in run["nodes"]] == ["success", "skipped", "success", "success", "success", "success"]

    extracted = (await service.inspect(run["run_id"], "extract"))["calls"]["extract"]["output"]["json"]
    assert extracted == {
        "invoice_number": "INV-2041",
        "vendor": "Acme Tools Ltd",
        "total": 1234.5,
        "date": "2026-11-02",
    }
    # The model was given what OCR read off the image.
    prompt = model.requests[0]["body"]["messages"][-1]["content"]
    assert "INV-2041" in prompt and "1,234.50" in prompt and model.requests[0]["auth"] == "Bearer local-key"

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT number, vendor, total, invoice_date, document, run_key FROM invoices").fetchall()
    assert rows == [("INV-2041", "Acme Tools Ltd", 1234.5, "2026-11-02", blob, f"{run['run_id']}:save")]

    [message] = [r for r in slack.requests if r["path"] == "/chat.postMessage"]
    assert message["auth"] == "Bearer xoxb-demo"
    assert message["body"]["channel"] == "#invoices"
    assert message["body"]["text"] == "Invoice INV-2041 from Acme Tools Ltd: 1234.5 (stored as row 1)"
