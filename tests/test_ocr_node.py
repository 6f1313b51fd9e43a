"""ai.ocr: documents by reference, read locally with RapidOCR or by AWS Textract.

Local OCR reads invoice images drawn by the test. Textract runs against moto's server, started
here, in this process; moto 5.2 has no AnalyzeDocument, ignores NextToken and finishes every job
at once, so the `textract` fixture fills exactly those gaps on moto's own request handlers (and
records what reached them). End-to-end tests run flows on the session's Temporal and worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import ClassVar

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer
from moto.textract.models import TextractBackend, textract_backends
from moto.textract.responses import TextractResponse
from PIL import Image, ImageDraw, ImageFont
from temporalio.testing import ActivityEnvironment

from conftest import finished, flow_doc, nodes_by_id
from floworch_server import blobs, nodes
from floworch_server.flowdoc import parse_data
from floworch_server.nodes import ocr
from floworch_server.nodes.spec import NodeError
from floworch_server.validate import validate

TRIGGER = {"id": "start", "type": "trigger.manual"}
INVOICE = ["INVOICE 2024-0042", "ACME Corporation", "Widgets x 3", "Total 1234.50"]
REGION = "us-east-1"
OCR = nodes.require("ai.ocr")
assert OCR.execute is not None
execute = OCR.execute


# ------------------------------------------------------------------ helpers
def font(size: int):
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "LiberationSans-Bold.ttf"):
        found = next(Path("/usr/share/fonts").rglob(name), None) if Path("/usr/share/fonts").exists() else None
        if found:
            return ImageFont.truetype(str(found), size)
    return ImageFont.load_default(size=size)


def invoice_png(lines: list[str] = INVOICE) -> bytes:
    """Black text on white, large and clear, like a clean scan."""
    # Small enough to keep OCR quick (RapidOCR scales the short side to 736 px anyway).
    image = Image.new("RGB", (600, 420), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 30 + i * 95), line, fill="black", font=font(42))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, format="PNG")
    return out.getvalue()


class FakeContext:
    """The NodeContext an executor sees, recording heartbeats and log lines."""

    def __init__(self, attempt: int = 1, key: str = "run-1:ocr"):
        self.run_id, self.node_id, self.node_type = key.split(":")[0], "ocr", "ai.ocr"
        self.attempt = attempt
        self.idempotency_key = key
        self.heartbeats: list[tuple] = []
        self.logs: list[tuple[str, str]] = []

    def heartbeat(self, *details):
        self.heartbeats.append(details)

    def log(self, level, message, **extra):
        self.logs.append((level, message))


async def fails(config: dict, ctx: FakeContext | None = None) -> NodeError:
    with pytest.raises(NodeError) as caught:
        await execute(ctx or FakeContext(), config, {})
    return caught.value


class TextractBlocks:
    """Builds Textract Blocks the way the service shapes them: PAGE > LINE > WORD, KEY_VALUE_SET
    pairs joined by a VALUE relationship, TABLE > CELL with 1-based RowIndex/ColumnIndex."""

    def __init__(self):
        self.blocks: list[dict] = [
            {
                "BlockType": "PAGE",
                "Id": "page-1",
                "Page": 1,
                "Confidence": 99.9,
                "Relationships": [{"Type": "CHILD", "Ids": []}],
            }
        ]

    def _add(self, block_type: str, **fields) -> str:
        block_id = f"{block_type.lower()}-{len(self.blocks)}"
        self.blocks.append({"BlockType": block_type, "Id": block_id, "Page": 1, **fields})
        return block_id

    def _words(self, text: str, confidence: float) -> list[str]:
        return [self._add("WORD", Text=w, Confidence=confidence, TextType="PRINTED") for w in text.split()]

    def line(self, text: str, confidence: float = 99.5, top: float = 0.1) -> TextractBlocks:
        words = self._words(text, confidence)
        geometry = {"BoundingBox": {"Left": 0.06, "Top": top, "Width": 0.5, "Height": 0.05}}
        line_id = self._add(
            "LINE", Text=text, Confidence=confidence, Geometry=geometry, Relationships=[{"Type": "CHILD", "Ids": words}]
        )
        self.blocks[0]["Relationships"][0]["Ids"].append(line_id)
        return self

    def key_value(
        self, key: str, value: str, key_confidence: float = 95.0, value_confidence: float = 93.0
    ) -> TextractBlocks:
        value_id = self._add(
            "KEY_VALUE_SET",
            EntityTypes=["VALUE"],
            Confidence=value_confidence,
            Relationships=[{"Type": "CHILD", "Ids": self._words(value, value_confidence)}],
        )
        self._add(
            "KEY_VALUE_SET",
            EntityTypes=["KEY"],
            Confidence=key_confidence,
            Relationships=[
                {"Type": "VALUE", "Ids": [value_id]},
                {"Type": "CHILD", "Ids": self._words(key, key_confidence)},
            ],
        )
        return self

    def checkbox(self, key: str, selected: bool) -> TextractBlocks:
        box = self._add(
            "SELECTION_ELEMENT", SelectionStatus="SELECTED" if selected else "NOT_SELECTED", Confidence=97.0
        )
        value_id = self._add(
            "KEY_VALUE_SET", EntityTypes=["VALUE"], Confidence=97.0, Relationships=[{"Type": "CHILD", "Ids": [box]}]
        )
        self._add(
            "KEY_VALUE_SET",
            EntityTypes=["KEY"],
            Confidence=96.0,
            Relationships=[{"Type": "VALUE", "Ids": [value_id]}, {"Type": "CHILD", "Ids": self._words(key, 96.0)}],
        )
        return self

    def table(self, rows: list[list[str]]) -> TextractBlocks:
        cells = [
            self._add(
                "CELL",
                RowIndex=r,
                ColumnIndex=c,
                RowSpan=1,
                ColumnSpan=1,
                Confidence=90.0,
                Relationships=[{"Type": "CHILD", "Ids": self._words(text, 90.0)}] if text else [],
            )
            for r, row in enumerate(rows, start=1)
            for c, text in enumerate(row, start=1)
        ]
        title = self._add(
            "TABLE_TITLE", Confidence=90.0, Relationships=[{"Type": "CHILD", "Ids": self._words("Items", 90.0)}]
        )
        self._add(
            "TABLE",
            Confidence=92.0,
            EntityTypes=["STRUCTURED_TABLE"],
            Relationships=[{"Type": "CHILD", "Ids": cells}, {"Type": "TABLE_TITLE", "Ids": [title]}],
        )
        return self


def invoice_lines() -> TextractBlocks:
    return (
        TextractBlocks()
        .line("INVOICE 2024-0042", top=0.05)
        .line("ACME Corporation", top=0.12)
        .line("Invoice No: 2024-0042", top=0.2)
        .line("Total: 1234.50", 98.0, top=0.8)
        .line("~ smudge ~", 41.0, top=0.95)
    )


def invoice_analysis() -> TextractBlocks:
    return (
        invoice_lines()
        .key_value("Invoice No:", "2024-0042")
        .key_value("Total:", "1234.50", 97.0, 88.0)
        .checkbox("Paid", True)
        .table([["Item", "Qty", "Price"], ["Widget", "3", "411.50"], ["Shipping", "", "0.00"]])
    )


EXPECTED_LINES = ["INVOICE 2024-0042", "ACME Corporation", "Invoice No: 2024-0042", "Total: 1234.50"]
EXPECTED_KEY_VALUES = [
    {"key": "Invoice No:", "value": "2024-0042", "confidence": 0.93, "page": 1},
    {"key": "Total:", "value": "1234.50", "confidence": 0.88, "page": 1},
    {"key": "Paid", "value": "[x]", "confidence": 0.96, "page": 1},
]
EXPECTED_TABLES = [[["Item", "Qty", "Price"], ["Widget", "3", "411.50"], ["Shipping", "", "0.00"]]]


# ------------------------------------------------------------------ moto's server
@pytest.fixture(scope="module")
def aws():
    """moto's server on a free port, with test credentials in the environment (restored after)."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.delenv(name, raising=False)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }.items():
            env.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3(aws):
    client = boto3.client("s3", endpoint_url=aws, region_name=REGION)

    def put(key: str, data: bytes, bucket: str = "scans") -> str:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    return put


@pytest.fixture
def textract(aws, monkeypatch):
    """What moto's Textract answers, and what reached it. Sets the Blocks its jobs and calls
    return, and adds what moto 5.2 lacks on its request handlers: AnalyzeDocument, NextToken
    pagination of GetDocument* (``page_size`` blocks a page) and jobs that stay IN_PROGRESS
    for ``in_progress_polls`` polls."""

    class Fake:
        page_size = 1000
        in_progress_polls = 0
        requests: ClassVar[list[tuple[str, dict]]] = []
        polls: ClassVar[dict[str, int]] = {}

        def blocks(self, blocks: list[dict], pages: int = 1) -> None:
            monkeypatch.setattr(TextractBackend, "BLOCKS", blocks)
            monkeypatch.setattr(TextractBackend, "PAGES", pages)

        def calls(self, action: str) -> list[dict]:
            return [params for name, params in self.requests if name == action]

    fake = Fake()
    fake.requests, fake.polls = [], {}

    def recorded(action: str, original):
        def handler(self):
            fake.requests.append((action, json.loads(self.body)))
            return original(self)

        return handler

    def analyze_document(self):
        return json.dumps({**self.textract_backend.detect_document_text(), "AnalyzeDocumentModelVersion": "1.0"})

    def paged(action: str, original):
        def handler(self):
            params = json.loads(self.body)
            fake.requests.append((action, params))
            job = json.loads(original(self))
            fake.polls[params["JobId"]] = fake.polls.get(params["JobId"], 0) + 1
            if fake.polls[params["JobId"]] <= fake.in_progress_polls:
                return json.dumps({"JobStatus": "IN_PROGRESS"})
            start = int(params.get("NextToken") or 0)
            size = min(fake.page_size, params.get("MaxResults") or 1000)
            page = {**job, "Blocks": job["Blocks"][start : start + size]}
            if start + size < len(job["Blocks"]):
                page["NextToken"] = str(start + size)
            return json.dumps(page)

        return handler

    monkeypatch.setattr(
        TextractResponse, "analyze_document", recorded("AnalyzeDocument", analyze_document), raising=False
    )
    for action, name in (
        ("DetectDocumentText", "detect_document_text"),
        ("StartDocumentAnalysis", "start_document_analysis"),
        ("StartDocumentTextDetection", "start_document_text_detection"),
    ):
        monkeypatch.setattr(TextractResponse, name, recorded(action, getattr(TextractResponse, name)))
    for action, name in (
        ("GetDocumentAnalysis", "get_document_analysis"),
        ("GetDocumentTextDetection", "get_document_text_detection"),
    ):
        monkeypatch.setattr(TextractResponse, name, paged(action, getattr(TextractResponse, name)))
    monkeypatch.setattr(ocr, "POLL_SECONDS", (0.01, 0.02))
    return fake


def textract_config(aws: str, document: str, **config) -> dict:
    return {"document": document, "provider": "textract", "region": REGION, "endpoint_url": aws, **config}


# ------------------------------------------------------------------ blob store
def test_the_blob_store_is_content_addressed_and_refuses_ids_that_are_not_a_digest():
    data = tiny_png()
    blob_id = blobs.put(data, "scan.png")
    assert re.fullmatch(r"blob:[0-9a-f]{64}", blob_id)
    assert blobs.put(data, "again.png") == blob_id
    assert blobs.path(blob_id).read_bytes() == data
    assert blobs.filename(blob_id) == "scan.png"
    for bad in ("blob:../../etc/passwd", "blob:" + "A" * 64, "blob:abc", "/etc/passwd", "blob:" + "0" * 63 + "/"):
        with pytest.raises(ValueError, match="not a blob id"):
            blobs.path(bad)


# ------------------------------------------------------------------ local OCR
async def test_local_ocr_reads_the_words_and_numbers_of_an_invoice_image(tmp_path):
    scan = tmp_path / "invoice.png"
    scan.write_bytes(invoice_png())
    result = await execute(FakeContext(), {"document": str(scan)}, {})
    for word in ("INVOICE", "ACME", "Corporation", "Total", "1234.50", "2024-0042"):
        assert word in result["text"], result["text"]
    assert next(line["text"] for line in result["lines"]).startswith("INVOICE")
    assert (result["pages"], result["provider"], result["document"], result["key_values"], result["tables"]) == (
        1,
        "local",
        str(scan),
        [],
        [],
    )
    total = next(line for line in result["lines"] if "1234.50" in line["text"])
    assert 0.5 < total["confidence"] <= 1
    box = total["box"]
    assert set(box) == {"left", "top", "width", "height"}
    # The total is the fourth line of text, in the lower part of the page, at its left.
    assert box["left"] < 0.2 and 0.7 < box["top"] < 0.95 and 0 < box["width"] < 1 and 0 < box["height"] < 0.2


@pytest.mark.parametrize(
    ("content", "name", "fmt"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "scan.pdf", "pdf"),
        (b"GIF89a\x01\x00\x01\x00", "scan.gif", "gif"),
        (b"hello", "notes.txt", "txt"),
    ],
)
async def test_local_ocr_refuses_formats_it_cannot_read_naming_the_format(tmp_path, content, name, fmt):
    path = tmp_path / name
    path.write_bytes(content)
    error = await fails({"document": str(path)})
    assert not error.retryable and error.kind == "UnsupportedDocument"
    assert f"{path} is {fmt}" in str(error) and "provider local" in str(error)


async def test_a_missing_file_or_blob_fails_without_retries_naming_the_document(tmp_path):
    missing = str(tmp_path / "nowhere" / "scan.png")
    error = await fails({"document": missing})
    assert (error.retryable, error.kind) == (False, "DocumentNotFound") and missing in str(error)
    blob_id = "blob:" + "ab" * 32
    error = await fails({"document": blob_id})
    assert not error.retryable and blob_id in str(error) and "no such blob" in str(error)
    error = await fails({"document": "blob:../../secrets"})
    assert not error.retryable and "not a blob id" in str(error)


# ------------------------------------------------------------------ Textract against moto's server
async def test_textract_detect_document_text_on_an_s3_image_against_motos_server(aws, s3, textract):
    textract.blocks(invoice_lines().blocks)
    document = s3("invoices/2024-0042.png", tiny_png())
    result = await execute(FakeContext(), textract_config(aws, document, min_confidence=0.5), {})
    assert [line["text"] for line in result["lines"]] == EXPECTED_LINES  # the 41 % smudge is left out
    assert result["text"] == "\n".join(EXPECTED_LINES)
    assert result["lines"][0] == {
        "text": "INVOICE 2024-0042",
        "confidence": 0.995,
        "box": {"left": 0.06, "top": 0.05, "width": 0.5, "height": 0.05},
        "page": 1,
    }
    assert (result["pages"], result["provider"], result["document"], result["key_values"], result["tables"]) == (
        1,
        "textract",
        document,
        [],
        [],
    )
    # The image's bytes were read from S3 and sent; no asynchronous job was started.
    assert len(textract.calls("DetectDocumentText")) == 1 and not textract.calls("StartDocumentTextDetection")


async def test_textract_analyze_document_reads_forms_and_tables_from_a_local_file_against_motos_server(
    aws, textract, tmp_path
):
    textract.blocks(invoice_analysis().blocks)
    scan = tmp_path / "invoice.jpg"
    Image.new("RGB", (8, 8), "white").save(scan, format="JPEG")
    result = await execute(FakeContext(), textract_config(aws, str(scan), features=["TABLES", "FORMS"]), {})
    assert [call["FeatureTypes"] for call in textract.calls("AnalyzeDocument")] == [["FORMS", "TABLES"]]
    assert result["key_values"] == EXPECTED_KEY_VALUES
    assert result["tables"] == EXPECTED_TABLES
    assert [line["text"] for line in result["lines"]] == [*EXPECTED_LINES, "~ smudge ~"]


@pytest.mark.parametrize(
    ("features", "start", "get"),
    [
        (["FORMS", "TABLES"], "StartDocumentAnalysis", "GetDocumentAnalysis"),
        ([], "StartDocumentTextDetection", "GetDocumentTextDetection"),
    ],
)
async def test_a_pdf_in_s3_runs_an_async_textract_job_polled_and_paged_against_motos_server(
    aws, s3, textract, features, start, get
):
    blocks = invoice_analysis().blocks
    textract.blocks(blocks, pages=1)
    textract.page_size, textract.in_progress_polls = 7, 2
    document = s3("invoices/2024-0042.pdf", b"%PDF-1.7\n% an invoice\n")
    ctx = FakeContext(key="flow-7f3a/run 12:ocr")
    result = await execute(ctx, textract_config(aws, document, features=features), {})

    [request] = textract.calls(start)
    assert request["DocumentLocation"] == {"S3Object": {"Bucket": "scans", "Name": "invoices/2024-0042.pdf"}}
    assert request.get("FeatureTypes") == (features or None)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", request["ClientRequestToken"]) and request[
        "ClientRequestToken"
    ].startswith("flow-7f3a-run-12-ocr-")
    polls = textract.calls(get)
    [job_id] = {p["JobId"] for p in polls}
    # Two IN_PROGRESS polls, then the pages of blocks, each asked for with the previous NextToken.
    pages = -(-len(blocks) // 7)
    assert [p.get("NextToken") for p in polls] == [None, None, None] + [str(7 * i) for i in range(1, pages)]
    # Every heartbeat carries the JobId, so whichever is the newest lets a retry resume the job.
    details = {"textract_job_id": job_id, "mode": "analysis" if features else "text", "document": document}
    assert len(ctx.heartbeats) >= 3 and all(h == (details,) for h in ctx.heartbeats)
    assert (result["key_values"], result["tables"], result["pages"]) == (EXPECTED_KEY_VALUES, EXPECTED_TABLES, 1)
    assert [line["text"] for line in result["lines"]] == [*EXPECTED_LINES, "~ smudge ~"]


async def test_a_retried_attempt_resumes_the_textract_job_in_its_heartbeat_details_against_motos_server(
    aws, s3, textract
):
    textract.blocks(invoice_analysis().blocks)
    document = s3("invoices/retried.pdf", b"%PDF-1.7\n")
    client = boto3.client("textract", endpoint_url=aws, region_name=REGION)
    first = client.start_document_analysis(
        DocumentLocation={"S3Object": {"Bucket": "scans", "Name": "invoices/retried.pdf"}}, FeatureTypes=["TABLES"]
    )["JobId"]
    jobs_before = len(textract_backends["123456789012"][REGION].async_document_analysis_jobs)

    env = ActivityEnvironment()
    details = [{"textract_job_id": first, "mode": "analysis", "document": document}]
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=details)
    ctx = FakeContext(attempt=2)
    result = await env.run(execute, ctx, textract_config(aws, document, features=["TABLES"]), {})

    assert len(textract.calls("StartDocumentAnalysis")) == 1  # only the first attempt's, made above
    assert len(textract_backends["123456789012"][REGION].async_document_analysis_jobs) == jobs_before
    assert {p["JobId"] for p in textract.calls("GetDocumentAnalysis")} == {first}
    assert ctx.heartbeats[0] == (details[0],)
    assert ("info", f"resuming Textract job {first} for {document} (attempt 2)") in ctx.logs
    assert result["tables"] == EXPECTED_TABLES


async def test_a_retry_whose_textract_job_has_expired_starts_a_new_job_against_motos_server(aws, s3, textract):
    textract.blocks(invoice_analysis().blocks)
    document = s3("invoices/old.pdf", b"%PDF-1.7\n")
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        attempt=3,
        heartbeat_details=[{"textract_job_id": "expired-job", "mode": "analysis", "document": document}],
    )
    ctx = FakeContext(attempt=3)
    result = await env.run(execute, ctx, textract_config(aws, document, features=["FORMS"]), {})
    assert len(textract.calls("StartDocumentAnalysis")) == 1
    assert next(p["JobId"] for p in textract.calls("GetDocumentAnalysis")) == "expired-job"
    assert ("warning", f"Textract no longer knows job expired-job for {document}; starting a new job") in ctx.logs
    assert result["key_values"] == EXPECTED_KEY_VALUES


async def test_a_failed_textract_job_fails_the_node_without_retries_against_motos_server(
    aws, s3, textract, monkeypatch
):
    monkeypatch.setattr(TextractBackend, "JOB_STATUS", "FAILED")
    document = s3("invoices/unreadable.pdf", b"%PDF-1.7\n")
    error = await fails(textract_config(aws, document, features=["TABLES"]))
    assert (error.retryable, error.kind) == (False, "TextractJobFailed") and document in str(error)


def test_the_client_request_token_fits_textracts_rules_and_is_the_same_on_every_attempt():
    key = "orders/run:2024-06-01T10:00:00Z:" + "ocr-node-" * 10
    token = ocr.request_token(key, "s3://scans/a.pdf", "analysis", "TABLES")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token)
    assert token == ocr.request_token(key, "s3://scans/a.pdf", "analysis", "TABLES")
    assert token != ocr.request_token(key, "s3://scans/b.pdf", "analysis", "TABLES")
    assert ocr.request_token("a:b", "d") != ocr.request_token("a-b", "d")


async def test_a_missing_s3_bucket_or_key_fails_without_retries_naming_the_document(aws, s3, textract):
    s3("present.png", tiny_png(), bucket="inbox")
    for document in ("s3://inbox/absent.png", "s3://no-such-bucket/scan.png"):
        for provider in ("textract", "local"):
            error = await fails({**textract_config(aws, document), "provider": provider})
            assert (error.retryable, error.kind) == (False, "DocumentNotFound"), error
            assert f"document not found: {document}" in str(error)


def aws_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "DetectDocumentText",
    )


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("ThrottlingException", 400, True),
        ("ProvisionedThroughputExceededException", 400, True),
        ("InternalServerError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("UnsupportedDocumentException", 400, False),
        ("AccessDeniedException", 400, False),
        ("InvalidParameterException", 400, False),
    ],
)
def test_aws_throttling_and_5xx_are_retried_and_other_refusals_are_not(code, status, retryable):
    error = ocr._client_error(ocr.parse_reference("s3://scans/a.png"), "DetectDocumentText", aws_error(code, status))
    assert error.retryable is retryable and "s3://scans/a.png" in str(error) and code in str(error)


# ------------------------------------------------------------------ Textract blocks, edge cases
def test_merged_table_cells_keep_their_text_in_the_top_left_cell():
    blocks = [
        {"BlockType": "TABLE", "Id": "t", "Relationships": [{"Type": "CHILD", "Ids": ["c1", "c2", "c3"]}]},
        {
            "BlockType": "CELL",
            "Id": "c1",
            "RowIndex": 1,
            "ColumnIndex": 1,
            "ColumnSpan": 2,
            "Relationships": [{"Type": "CHILD", "Ids": ["w1"]}],
        },
        {"BlockType": "CELL", "Id": "c2", "RowIndex": 2, "ColumnIndex": 1},
        {
            "BlockType": "CELL",
            "Id": "c3",
            "RowIndex": 2,
            "ColumnIndex": 2,
            "Relationships": [{"Type": "CHILD", "Ids": ["w2"]}],
        },
        {"BlockType": "WORD", "Id": "w1", "Text": "Summary"},
        {"BlockType": "WORD", "Id": "w2", "Text": "42"},
    ]
    assert ocr.normalise_blocks(blocks)["tables"] == [[["Summary", ""], ["", "42"]]]


# ------------------------------------------------------------------ end to end, and validation
async def test_a_flow_reads_an_invoice_from_the_blob_store_end_to_end(service, published):
    document = blobs.put(invoice_png(), "invoice.png")
    flow = await published(
        [
            TRIGGER,
            {"id": "ocr", "type": "ai.ocr", "config": {"document": "{{ input.document }}"}},
            {
                "id": "use",
                "type": "transform",
                "config": {"output": {"text": "{{ nodes.ocr.output.text }}", "pages": "{{ nodes.ocr.output.pages }}"}},
            },
        ],
        [("start", "ocr"), ("ocr", "use")],
    )
    run = await finished(
        service, (await service.start_run(flow, input={"document": document}, by="t"))["run_id"], timeout=180
    )
    assert run["status"] == "success", run.get("error")
    out = run["result"]["outputs"]["use"]
    for word in ("INVOICE", "ACME", "Total", "1234.50"):
        assert word in out["text"], out
    assert out["pages"] == 1


async def test_a_missing_document_fails_the_node_at_once_naming_the_path(service, published, tmp_path):
    missing = str(tmp_path / "scans" / "missing-invoice.png")
    flow = await published(
        [TRIGGER, {"id": "ocr", "type": "ai.ocr", "config": {"document": "{{ input.document }}"}}], [("start", "ocr")]
    )
    run = await finished(service, (await service.start_run(flow, input={"document": missing}, by="t"))["run_id"])
    node = nodes_by_id(run)["ocr"]
    assert (run["status"], node["status"], node["attempts"]) == ("failed", "failed", 1)
    assert f"document not found: {missing}" in node["error"]


def test_a_config_that_breaks_the_schema_is_rejected_at_validation_naming_the_field():
    def problems(config: dict) -> list:
        doc, parse_problems = parse_data(
            flow_doc([TRIGGER, {"id": "ocr", "type": "ai.ocr", "config": config}], [("start", "ocr")])
        )
        assert doc is not None and not parse_problems
        return [(p.node, p.field, p.code) for p in validate(doc)]

    assert problems({"document": "{{ input.document }}"}) == []
    assert (
        problems({"document": "s3://b/k.pdf", "provider": "textract", "features": ["FORMS"], "min_confidence": 0.8})
        == []
    )
    assert problems({"document": "scan.png", "provider": "tesseract"}) == [("ocr", "config.provider", "invalid-config")]
    assert problems({"document": "scan.png", "min_confidence": 2}) == [
        ("ocr", "config.min_confidence", "invalid-config")
    ]
    assert problems({"document": "scan.png", "provider": "textract", "features": ["SIGNATURES"]}) == [
        ("ocr", "config.features[0]", "invalid-config")
    ]
    assert problems({"provider": "local"}) == [("ocr", "config", "invalid-config")]
    assert problems({"document": "scan.png", "features": ["TABLES"]}) == [
        ("ocr", "config.features", "ocr-features-need-textract")
    ]
