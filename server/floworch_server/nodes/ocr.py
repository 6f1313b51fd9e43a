"""`ai.ocr`: text, lines, key-value pairs and tables from a scanned document.

Two providers behind one output:
- ``local``: RapidOCR in the worker process. Its models ship inside the wheel, so it needs no
  network; the engine is loaded once per process and run on a thread, off the event loop.
- ``textract``: AWS Textract through boto3, with credentials from the worker's environment or
  boto3's usual chain (never from the .flow file). Images go to DetectDocumentText, or to
  AnalyzeDocument when ``features`` are asked for; PDFs and TIFFs in S3 go to an asynchronous job.

The document travels by reference (a path, ``s3://bucket/key`` or ``blob:<sha256>``): its bytes
never enter an activity's input or output, so they never reach Temporal's history.

This module is imported by the workflow sandbox and by notebook kernels: boto3, PIL and RapidOCR
are imported inside the functions that use them, never at the top.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio import activity

from .. import blobs
from ..problems import Problem
from .spec import NodeError, NodeSpec, Port, RetryDefaults, register

# Seconds between polls of an asynchronous Textract job: the first wait, and the longest one.
POLL_SECONDS = (1.0, 5.0)
# Blocks asked for per GetDocument* page (Textract's maximum).
PAGE_SIZE = 1000

LOCAL_FORMATS = ("png", "jpeg", "tiff", "bmp", "webp")
TEXTRACT_FORMATS = ("png", "jpeg", "tiff", "pdf")
# Formats Textract reads page by page in an asynchronous job when they are in S3.
MULTI_PAGE = ("pdf", "tiff")

_MAGIC = (
    (b"%PDF", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
)
_EXTENSIONS = {
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "png": "png",
    "tif": "tiff",
    "tiff": "tiff",
    "pdf": "pdf",
    "bmp": "bmp",
    "webp": "webp",
    "gif": "gif",
}


# ------------------------------------------------------------------ the document reference
@dataclass(frozen=True)
class Document:
    ref: str  # as configured: every message names the document this way
    path: Path | None = None  # a local file or a blob
    bucket: str | None = None  # an S3 object
    key: str | None = None

    @property
    def in_s3(self) -> bool:
        return self.bucket is not None


def parse_reference(ref: Any) -> Document:
    """The document a ``config.document`` value names."""
    if not isinstance(ref, str) or not ref.strip():
        raise NodeError(
            f"config.document must be a path, s3://bucket/key or blob:<id>, got {ref!r}",
            retryable=False,
            kind="InvalidDocument",
        )
    ref = ref.strip()
    if ref.startswith("s3://"):
        bucket, _, key = ref[len("s3://") :].partition("/")
        if not bucket or not key:
            raise NodeError(
                f"config.document {ref!r} must name a bucket and a key: s3://bucket/key",
                retryable=False,
                kind="InvalidDocument",
            )
        return Document(ref, bucket=bucket, key=key)
    if blobs.is_blob_id(ref):
        try:
            return Document(ref, path=blobs.path(ref))
        except ValueError as exc:
            raise NodeError(f"config.document: {exc}", retryable=False, kind="InvalidDocument") from None
    return Document(ref, path=Path(ref.removeprefix("file://")).expanduser())


def sniff_format(head: bytes, name: str = "") -> str:
    """The document's format from its first bytes; the file name's extension when they say nothing."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return _EXTENSIONS.get(suffix, suffix or "unknown")


def _check_format(doc: Document, fmt: str, provider: str) -> None:
    supported = LOCAL_FORMATS if provider == "local" else TEXTRACT_FORMATS
    if fmt in supported:
        return
    hint = (
        " (provider local cannot render PDF pages: use provider textract, or convert the pages to images)"
        if fmt == "pdf"
        else ""
    )
    raise NodeError(
        f"document {doc.ref} is {fmt}, which provider {provider} cannot read; it reads {', '.join(supported)}{hint}",
        retryable=False,
        kind="UnsupportedDocument",
    )


def _read_file(doc: Document) -> bytes:
    assert doc.path is not None, "a document outside S3 has a path"
    try:
        return doc.path.read_bytes()
    except FileNotFoundError:
        what = "blob" if blobs.is_blob_id(doc.ref) else "file"
        raise NodeError(
            f"document not found: {doc.ref} (no such {what}; config.document)", retryable=False, kind="DocumentNotFound"
        ) from None
    except (IsADirectoryError, PermissionError) as exc:
        raise NodeError(
            f"cannot read document {doc.ref}: {exc.strerror}", retryable=False, kind="DocumentUnreadable"
        ) from None


# ------------------------------------------------------------------ the node
async def _execute(ctx: Any, config: dict, inputs: dict) -> dict:
    provider = config.get("provider", "local")
    doc = parse_reference(config.get("document"))
    min_confidence = float(config.get("min_confidence", 0))
    if provider == "local":
        if config.get("features"):
            raise NodeError(
                "config.features needs provider textract: local OCR reads lines only",
                retryable=False,
                kind="InvalidConfig",
            )
        result = await _local(ctx, doc, config)
    else:
        result = await _textract(ctx, doc, config)
    result = _filtered(result, min_confidence)
    ctx.log("info", f"read {doc.ref} with {provider}: {result['pages']} page(s), {len(result['lines'])} line(s)")
    return {**result, "provider": provider, "document": doc.ref}


def _filtered(result: dict, min_confidence: float) -> dict:
    lines = [line for line in result["lines"] if line["confidence"] >= min_confidence]
    key_values = [kv for kv in result["key_values"] if kv["confidence"] >= min_confidence]
    return {**result, "text": "\n".join(line["text"] for line in lines), "lines": lines, "key_values": key_values}


def _check(node: Any, doc: Any) -> list[Problem]:
    provider = node.config.get("provider", "local")
    if provider == "local" and node.config.get("features"):
        return [
            Problem(
                "ocr-features-need-textract",
                "features (TABLES, FORMS) are read by provider textract only",
                node=node.id,
                field="config.features",
                hint="set provider to textract, or remove features",
            )
        ]
    return []


# ------------------------------------------------------------------ provider: local (RapidOCR)
_ENGINE: Any = None
# One engine per worker process (loading it takes seconds), used by one OCR at a time: it keeps
# per-call settings on itself, and onnxruntime already spreads one call over every core.
_ENGINE_LOCK = threading.Lock()


def _engine() -> Any:
    global _ENGINE
    if _ENGINE is None:
        from rapidocr_onnxruntime import RapidOCR

        _ENGINE = RapidOCR()
    return _ENGINE


async def _local(ctx: Any, doc: Document, config: dict) -> dict:
    if doc.in_s3:
        data = await _s3_bytes(doc, config)
    else:
        data = await asyncio.to_thread(_read_file, doc)
    fmt = sniff_format(data[:16], _name_of(doc))
    _check_format(doc, fmt, "local")
    return await asyncio.to_thread(_recognise, doc, data)


def _recognise(doc: Document, data: bytes) -> dict:
    import io

    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]  # TIFF pages
    except (UnidentifiedImageError, OSError) as exc:
        raise NodeError(
            f"document {doc.ref} could not be decoded as an image: {exc}", retryable=False, kind="UnsupportedDocument"
        ) from None
    lines = []
    for page, frame in enumerate(frames, start=1):
        width, height = frame.size
        with _ENGINE_LOCK:
            found, _ = _engine()(frame)
        for quad, text, score in found or []:
            lines.append(
                {
                    "text": text,
                    "confidence": round(float(score), 4),
                    "box": _box_of_quad(quad, width, height),
                    "page": page,
                }
            )
    return {"lines": lines, "key_values": [], "tables": [], "pages": len(frames)}


def _box_of_quad(quad: list, width: int, height: int) -> dict:
    xs = [max(0.0, min(float(x), width)) for x, _ in quad]
    ys = [max(0.0, min(float(y), height)) for _, y in quad]
    return _box(min(xs) / width, min(ys) / height, (max(xs) - min(xs)) / width, (max(ys) - min(ys)) / height)


def _box(left: float, top: float, width: float, height: float) -> dict:
    return {"left": round(left, 4), "top": round(top, 4), "width": round(width, 4), "height": round(height, 4)}


def _name_of(doc: Document) -> str:
    if doc.in_s3:
        return doc.key or ""
    return blobs.filename(doc.ref) if blobs.is_blob_id(doc.ref) or doc.path is None else doc.path.name


# ------------------------------------------------------------------ provider: textract
async def _textract(ctx: Any, doc: Document, config: dict) -> dict:
    features = sorted(set(config.get("features") or []))
    if doc.in_s3:
        head = await _s3_bytes(doc, config, first=16)
        fmt = sniff_format(head, doc.key or "")
        _check_format(doc, fmt, "textract")
        if fmt in MULTI_PAGE:
            return await _textract_job(ctx, doc, config, features)
        data = await _s3_bytes(doc, config)
    else:
        data = await asyncio.to_thread(_read_file, doc)
        _check_format(doc, sniff_format(data[:16], _name_of(doc)), "textract")
    client = await _aws_client("textract", config, doc)
    if features:
        response = await _aws(
            doc, "AnalyzeDocument", client.analyze_document, Document={"Bytes": data}, FeatureTypes=features
        )
    else:
        response = await _aws(doc, "DetectDocumentText", client.detect_document_text, Document={"Bytes": data})
    return normalise_blocks(response.get("Blocks", []), response.get("DocumentMetadata"))


async def _textract_job(ctx: Any, doc: Document, config: dict, features: list[str]) -> dict:
    """Start (or resume) an asynchronous job over the S3 object and collect every page of blocks.

    Two guards keep a retried attempt from paying for a second job: the JobId is recorded in the
    heartbeat details, which the next attempt reads back; and the start request carries a
    ClientRequestToken derived from the run, node and document, so Textract itself answers a
    repeated start with the first job."""
    client = await _aws_client("textract", config, doc)
    # StartDocumentAnalysis needs at least one feature type; plain text has its own job API.
    mode = "analysis" if features else "text"
    (start_name, start_method), (get_name, get_method) = _JOB_APIS[mode]
    start, get = getattr(client, start_method), getattr(client, get_method)

    job_id = previous_job(doc.ref, mode)
    response = None
    if job_id:
        ctx.log("info", f"resuming Textract job {job_id} for {doc.ref} (attempt {ctx.attempt})")
        try:
            response = await _aws(doc, get_name, get, JobId=job_id, MaxResults=PAGE_SIZE)
        except NodeError as exc:
            if exc.kind != "InvalidJobIdException":
                raise
            # Textract keeps a job's results for 7 days; after that the document is read again.
            ctx.log("warning", f"Textract no longer knows job {job_id} for {doc.ref}; starting a new job")
            job_id = None
    if not job_id:
        request: dict[str, Any] = {
            "DocumentLocation": {"S3Object": {"Bucket": doc.bucket, "Name": doc.key}},
            "ClientRequestToken": request_token(ctx.idempotency_key, doc.ref, mode, *features),
            "JobTag": _job_tag(ctx.node_id),
        }
        if features:
            request["FeatureTypes"] = features
        job_id = (await _aws(doc, start_name, start, **request))["JobId"]
        ctx.log("info", f"started Textract job {job_id} ({start_name}) for {doc.ref}")
    details = {"textract_job_id": job_id, "mode": mode, "document": doc.ref}
    ctx.heartbeat(details)

    delay = POLL_SECONDS[0]
    while True:
        if response is None:
            response = await _aws(doc, get_name, get, JobId=job_id, MaxResults=PAGE_SIZE)
        if response.get("JobStatus") != "IN_PROGRESS":
            break
        # Heartbeat on every poll so a lost worker is noticed; the JobId rides along.
        ctx.heartbeat(details)
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, POLL_SECONDS[1])
        response = None

    status = response.get("JobStatus")
    if status == "FAILED":
        raise NodeError(
            f"Textract job {job_id} for {doc.ref} failed: {response.get('StatusMessage') or 'no reason given'}",
            retryable=False,
            kind="TextractJobFailed",
        )
    if status == "PARTIAL_SUCCESS":
        warnings = "; ".join(f"{w.get('ErrorCode')} on pages {w.get('Pages')}" for w in response.get("Warnings", []))
        ctx.log("warning", f"Textract job {job_id} for {doc.ref} succeeded in part: {warnings or 'no details'}")
    blocks = list(response.get("Blocks", []))
    metadata = response.get("DocumentMetadata")
    while response.get("NextToken"):
        response = await _aws(doc, get_name, get, JobId=job_id, MaxResults=PAGE_SIZE, NextToken=response["NextToken"])
        blocks += response.get("Blocks", [])
        ctx.heartbeat(details)
    return normalise_blocks(blocks, metadata)


_JOB_APIS = {
    "analysis": (
        ("StartDocumentAnalysis", "start_document_analysis"),
        ("GetDocumentAnalysis", "get_document_analysis"),
    ),
    "text": (
        ("StartDocumentTextDetection", "start_document_text_detection"),
        ("GetDocumentTextDetection", "get_document_text_detection"),
    ),
}


def previous_job(document_ref: str, mode: str) -> str | None:
    """The Textract JobId an earlier attempt of this activity recorded for the same document."""
    if not activity.in_activity():
        return None
    for detail in reversed(activity.info().heartbeat_details or ()):
        if (
            isinstance(detail, dict)
            and detail.get("document") == document_ref
            and detail.get("mode") == mode
            and detail.get("textract_job_id")
        ):
            return str(detail["textract_job_id"])
    return None


def request_token(idempotency_key: str, *parts: str) -> str:
    """A ClientRequestToken (1-64 characters of ``[A-Za-z0-9_-]``): the readable part of the key,
    then a digest of the key and the request's parts, so that two keys which sanitise alike, or
    one node reading two documents, never share a token."""
    digest = hashlib.sha256("\x1f".join((idempotency_key, *parts)).encode()).hexdigest()[:20]
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", idempotency_key).strip("-")[: 64 - len(digest) - 1]
    return f"{readable}-{digest}" if readable else digest


def _job_tag(node_id: str) -> str:
    return ("floworch-" + re.sub(r"[^A-Za-z0-9_.:-]+", "-", node_id))[:64]


# ------------------------------------------------------------------ Textract blocks -> output
def normalise_blocks(blocks: list[dict], metadata: dict | None = None) -> dict:
    """Textract's Blocks as this node's output (before the confidence filter).

    LINE blocks become ``lines`` (confidence 0..1, box as Textract's BoundingBox); KEY_VALUE_SET
    KEY blocks joined to their VALUE blocks become ``key_values``; TABLE blocks become a grid of
    their CELLs' text by RowIndex/ColumnIndex (a merged cell's text sits in its top-left cell)."""
    by_id = {b["Id"]: b for b in blocks if "Id" in b}
    lines = [
        {"text": b.get("Text", ""), "confidence": _confidence(b), "box": _bounding_box(b), "page": b.get("Page", 1)}
        for b in blocks
        if b.get("BlockType") == "LINE"
    ]
    key_values = []
    for b in blocks:
        if b.get("BlockType") != "KEY_VALUE_SET" or "KEY" not in b.get("EntityTypes", []):
            continue
        values = [by_id[i] for i in _related(b, "VALUE") if i in by_id]
        value_text = " ".join(t for t in (_child_text(v, by_id) for v in values) if t)
        confidence = min([_confidence(b)] + [_confidence(v) for v in values])
        key_values.append(
            {"key": _child_text(b, by_id), "value": value_text, "confidence": confidence, "page": b.get("Page", 1)}
        )
    tables = [_table(b, by_id) for b in blocks if b.get("BlockType") == "TABLE"]
    return {"lines": lines, "key_values": key_values, "tables": tables, "pages": _page_count(blocks, metadata, lines)}


def _related(block: dict, kind: str) -> list[str]:
    return [i for rel in block.get("Relationships", []) if rel.get("Type") == kind for i in rel.get("Ids", [])]


def _child_text(block: dict, by_id: dict[str, dict]) -> str:
    words = []
    for child in (by_id.get(i) for i in _related(block, "CHILD")):
        if child is None:
            continue
        if child.get("BlockType") == "WORD":
            words.append(child.get("Text", ""))
        elif child.get("BlockType") == "SELECTION_ELEMENT":
            words.append("[x]" if child.get("SelectionStatus") == "SELECTED" else "[ ]")
    return " ".join(w for w in words if w)


def _table(table: dict, by_id: dict[str, dict]) -> list[list[str]]:
    cells = [c for c in (by_id.get(i) for i in _related(table, "CHILD")) if c and c.get("BlockType") == "CELL"]
    if not cells:
        return []
    rows = max(c.get("RowIndex", 1) + c.get("RowSpan", 1) - 1 for c in cells)
    columns = max(c.get("ColumnIndex", 1) + c.get("ColumnSpan", 1) - 1 for c in cells)
    grid = [["" for _ in range(columns)] for _ in range(rows)]
    for cell in cells:
        grid[cell.get("RowIndex", 1) - 1][cell.get("ColumnIndex", 1) - 1] = _child_text(cell, by_id)
    return grid


def _confidence(block: dict) -> float:
    # Textract gives percentages; the output uses 0..1 like the local provider.
    return round(float(block.get("Confidence", 0.0)) / 100.0, 4)


def _bounding_box(block: dict) -> dict:
    box = block.get("Geometry", {}).get("BoundingBox", {})
    return _box(box.get("Left", 0.0), box.get("Top", 0.0), box.get("Width", 0.0), box.get("Height", 0.0))


def _page_count(blocks: list[dict], metadata: dict | None, lines: list[dict]) -> int:
    pages = (metadata or {}).get("Pages")
    if isinstance(pages, int):
        return pages
    page_blocks = sum(1 for b in blocks if b.get("BlockType") == "PAGE")
    return page_blocks or max((line["page"] for line in lines), default=1)


# ------------------------------------------------------------------ AWS calls and their errors
# Error codes worth another attempt: the service may answer differently in a moment.
RETRYABLE_AWS_CODES = {
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "TooManyRequestsException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
}
MISSING_AWS_CODES = {"NoSuchBucket", "NoSuchKey", "NotFound", "404", "InvalidS3ObjectException"}
CREDENTIAL_AWS_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
}
CREDENTIALS_HINT = "give the worker AWS credentials through its environment or boto3's credential chain (a .flow file never holds them)"


async def _aws_client(service: str, config: dict, doc: Document) -> Any:
    return await _aws(
        doc, f"create {service} client", _make_client, service, config.get("region"), config.get("endpoint_url")
    )


def _make_client(service: str, region: str | None, endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 3},
        "connect_timeout": 10,
        "read_timeout": 60,
    }
    if endpoint_url:
        # S3-compatible servers rarely serve virtual-hosted bucket names.
        options["s3"] = {"addressing_style": "path"}
    # A session per client: boto3's default session is not safe to share across threads.
    return boto3.session.Session().client(
        service, region_name=region or None, endpoint_url=endpoint_url or None, config=Config(**options)
    )


async def _s3_bytes(doc: Document, config: dict, first: int | None = None) -> bytes:
    """The S3 object's bytes, or only its ``first`` bytes (enough to tell its format)."""
    client = await _aws_client("s3", config, doc)
    request = {"Bucket": doc.bucket, "Key": doc.key}
    if first:
        request["Range"] = f"bytes=0-{first - 1}"
    try:
        response = await _aws(doc, "GetObject", client.get_object, **request)
    except NodeError as exc:
        if exc.kind == "InvalidRange":  # a range of an empty object
            raise NodeError(f"document {doc.ref} is empty", retryable=False, kind="UnsupportedDocument") from None
        raise
    return await _aws(doc, "GetObject", response["Body"].read)


async def _aws(doc: Document, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call boto3 on a thread (it blocks) and turn its errors into NodeErrors that say whether
    another attempt may help."""
    from botocore import exceptions as aws

    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except aws.ClientError as exc:
        raise _client_error(doc, action, exc) from None
    except aws.NoCredentialsError:
        raise NodeError(
            f"{action} for {doc.ref}: no AWS credentials found; {CREDENTIALS_HINT}",
            retryable=False,
            kind="AwsCredentials",
        ) from None
    except aws.NoRegionError:
        raise NodeError(
            f"{action} for {doc.ref}: no AWS region: set config.region or AWS_REGION in the worker's environment",
            retryable=False,
            kind="AwsRegion",
        ) from None
    except (
        aws.EndpointConnectionError,
        aws.ConnectTimeoutError,
        aws.ReadTimeoutError,
        aws.ConnectionClosedError,
    ) as exc:
        raise NodeError(f"{action} for {doc.ref}: {exc}", kind="AwsUnavailable") from None
    except (aws.ParamValidationError, ValueError) as exc:
        raise NodeError(f"{action} for {doc.ref}: {exc}", retryable=False, kind="AwsInvalidRequest") from None
    except aws.BotoCoreError as exc:
        raise NodeError(f"{action} for {doc.ref}: {exc}", kind="AwsError") from None


def _client_error(doc: Document, action: str, exc: Any) -> NodeError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = error.get("Message") or str(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in MISSING_AWS_CODES:
        return NodeError(f"document not found: {doc.ref} ({code}: {message})", retryable=False, kind="DocumentNotFound")
    if code in RETRYABLE_AWS_CODES or status == 429 or status >= 500:
        return NodeError(
            f"{action} for {doc.ref} failed for now ({code}, HTTP {status}): {message}", kind="AwsRetryable"
        )
    if code in CREDENTIAL_AWS_CODES:
        return NodeError(
            f"{action} for {doc.ref} was refused ({code}): {message}; {CREDENTIALS_HINT}",
            retryable=False,
            kind="AwsAccessDenied",
        )
    if code == "UnsupportedDocumentException" and not doc.in_s3:
        message += " (Textract reads multi-page PDF and TIFF documents only from S3: give an s3:// document)"
    return NodeError(f"{action} for {doc.ref} failed ({code}): {message}", retryable=False, kind=code or "AwsError")


OCR = register(
    NodeSpec(
        type="ai.ocr",
        category="AI",
        title="OCR",
        description="Reads the text of a scanned document or photo (lines, and with Textract key-value pairs and tables), locally with RapidOCR or with AWS Textract.",
        kind="activity",
        icon="scan-text",
        execute=_execute,
        check=_check,
        # Long multi-page Textract jobs; the heartbeat notices a lost worker well before the timeout.
        timeout_seconds=900,
        heartbeat_seconds=60,
        retry=RetryDefaults(max_attempts=3, initial_interval_seconds=2.0, backoff=2.0, max_interval_seconds=60.0),
        outputs=(Port("out", "text"),),
        config_schema={
            "type": "object",
            "required": ["document"],
            "additionalProperties": False,
            "properties": {
                "document": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The document by reference: a local file path, s3://bucket/key, or blob:<sha256> from the blob store; usually {{ input.document }}.",
                },
                "provider": {
                    "enum": ["local", "textract"],
                    "default": "local",
                    "description": "local: RapidOCR in the worker, no network (png, jpeg, tiff, bmp, webp); textract: AWS Textract (png, jpeg, tiff, pdf).",
                },
                "features": {
                    "type": "array",
                    "items": {"enum": ["TABLES", "FORMS"]},
                    "uniqueItems": True,
                    "description": "Textract only: TABLES fills `tables`, FORMS fills `key_values` (AnalyzeDocument instead of DetectDocumentText).",
                },
                "region": {
                    "type": "string",
                    "description": "AWS region of S3 and Textract; default: the worker's AWS configuration.",
                },
                "endpoint_url": {
                    "type": "string",
                    "pattern": "^(https?://|\\{\\{)",
                    "description": "An S3/Textract-compatible endpoint instead of AWS's own.",
                },
                "min_confidence": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "default": 0,
                    "description": "Leave out lines and key-value pairs read with less confidence (0..1).",
                },
            },
        },
        docs=(
            "Output: `{text, lines: [{text, confidence, box, page}], key_values: [{key, value, confidence, page}], "
            "tables: [[[cell, ...], ...]], pages, provider, document}`. `confidence` is 0..1; `box` is "
            "`{left, top, width, height}` as fractions of the page's width and height (Textract's BoundingBox; "
            "the local provider's boxes are converted to the same form); `text` is the kept lines joined by newlines; "
            "`tables` is a list of tables, each a list of rows of cell text. "
            "The document is passed by reference and never enters the run's history: put a file in the blob store "
            "(`floworch_server.blobs.put(data, name)` gives `blob:<sha256>`) or in S3. "
            "Textract: images are sent as bytes to DetectDocumentText (or AnalyzeDocument when `features` are set); "
            "PDF and TIFF objects in S3 go to StartDocumentTextDetection/StartDocumentAnalysis, whose JobId is kept in the "
            "activity's heartbeat details so a retried attempt resumes the same job, and whose ClientRequestToken comes "
            "from the run and node. AWS credentials come from the worker's environment or boto3's chain. "
            "A missing document or an unsupported format fails at once; throttling and AWS 5xx are retried."
        ),
    )
)
