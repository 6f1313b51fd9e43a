"""FlowOrchestrator settings: the one place every option is read.

Every field can be set by an environment variable named ``FLOWORCH_<FIELD>`` (upper case),
for example ``FLOWORCH_TEMPORAL_ADDRESS=temporal.example:7233``. The Jupyter server extension
also accepts them as ``c.FlowOrch.<field>`` in Jupyter config, which override the environment.

When no Temporal address is configured, the embedded supervisor starts a dev server and writes
its address to ``<data_dir>/runtime.json``; every other process (worker, kernel, Jupyter server)
started with the same data directory reads it from there.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "FLOWORCH_"


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "floworch")


@dataclass
class Settings:
    # Where the embedded services keep their state (Temporal SQLite file, store, runtime.json).
    data_dir: str = field(default_factory=_default_data_dir)
    # Temporal: empty address means "use the embedded dev server of this data directory".
    temporal_address: str = ""
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_tls_cert: str = ""  # client certificate (PEM path) for mTLS
    temporal_tls_key: str = ""
    temporal_tls_ca: str = ""
    temporal_api_key: str = ""
    # Task queue of the interpreter workflow, and the default one of node activities.
    task_queue: str = "floworch"
    # Node types pinned to task queues, "glob=queue" pairs matched on the node type in order:
    # "ai.*=gpu,action.db_write=db". A node's own policy.task_queue wins. Read when a run starts
    # (the run's input records the queues), so changing it affects new runs only.
    node_task_queues: str = ""
    # Worker processes (`floworch worker`): activities and workflow tasks each runs at once.
    worker_concurrency: int = 100
    # Worker versioning: workers with a build id join this Temporal worker deployment as the
    # version of that build id; each run stays on the version it started on. Empty build id:
    # unversioned workers.
    worker_deployment: str = "floworch"
    worker_build_id: str = ""
    # Store: empty means SQLite in the data directory.
    database_url: str = ""
    # PostgreSQL: a URL logging in as the tables' owner, used only to migrate the schema and grant
    # database_url's role its rights (so the application's role is not the owner, and row-level
    # security and the append-only audit log hold against it). Empty: database_url migrates.
    database_owner_url: str = ""
    # PostgreSQL: a read replica of database_url (a hot standby, or any read-only URL of the same
    # database) that serves the reads which tolerate replication lag: run lists, the dashboard
    # and metrics, the audit log (store/repo.py says which). Empty: every read goes to database_url.
    database_read_url: str = ""
    # Embedded supervisor.
    workers: int = 1
    temporal_port: int = 0  # 0: pick a free port
    # The deployment's own tenant: where runs and flows go when a request names none.
    tenant: str = "default"
    # Role (admin, editor, viewer or none) of a Jupyter-authenticated user with no membership in
    # the deployment's own tenant. admin suits one person's server (the Jupyter token's holder
    # can open a terminal anyway); a team server sets none, so only members get in.
    jupyter_role: str = "admin"
    # Days a refresh token (auth.py) may wait before it is used; each use gives a new one.
    refresh_token_days: int = 14
    # Stored credentials are envelope-encrypted (secrets.py, keys.py): each with its own AES-256-GCM
    # data key, wrapped by a key-encryption key from key_file (empty: <data_dir>/keys.json, made
    # once, owner-only) or, when kms_key_id is set, by that AWS KMS key (id, ARN or alias/...).
    key_file: str = ""
    kms_key_id: str = ""
    kms_region: str = ""  # empty: the region in the key's ARN, else boto3's default
    kms_endpoint_url: str = ""  # empty: AWS's own endpoint (set it for a VPC endpoint)
    # Fernet key of credentials stored by versions before envelope encryption (read only;
    # `floworch keys rotate` re-encrypts them); empty: <data_dir>/secret.key if it exists.
    secret_key: str = ""
    user: str = ""  # who acts from a kernel; defaults to the OS user
    # Outbound HTTP may reach private/internal addresses only when listed here (see netguard.py):
    # comma-separated host names ("*.corp.example" for subdomains), IPs or CIDRs.
    http_allow: str = ""
    # Retention (retention.py), in days; 0 keeps forever. Runs go by end time, never while running.
    run_retention_days: int = 90
    log_retention_days: int = 30
    # Stored documents (blobs.py) are kept unless this says otherwise.
    blob_retention_days: int = 0
    # Seconds between evaluations of the alert rules (alerts.py) in the Jupyter server.
    alert_interval_seconds: int = 60
    # Tracing (tracing.py): "file" appends spans to <data_dir>/traces.jsonl, "console" prints
    # them, "otlp" sends them to the collector at otel_endpoint, "none" turns tracing off.
    otel_exporter: str = "file"
    otel_endpoint: str = ""  # OTLP endpoint URL; empty: the exporter's default (OTEL_EXPORTER_OTLP_* variables)
    # Log lines (logging_json.py): "auto" writes JSON into log files and readable text to a
    # terminal; "json" or "text" use that format everywhere.
    log_format: str = "auto"
    # Rate limits (ratelimit.py). Counts live in this Redis (redis://host:6379/0), shared by every
    # server and worker; empty: in each process's memory (fine for one machine's `make run`).
    redis_url: str = ""
    # Limits in the `limits` notation ("600/minute", "1/5 seconds", "10/second;500/hour"); empty: none.
    # API requests per user and per tenant (429 with Retry-After when used up):
    rate_limit_user: str = "600/minute"
    rate_limit_tenant: str = "6000/minute"
    # Calls to providers, per tenant, as "name=limit" pairs: "openai=60/minute,slack=1/second". A
    # name is a SaaS node's integration provider, an ai.llm node's provider, or action.http's host.
    # A node whose provider's limit is used up waits (status retrying) within its retry policy.
    rate_limit_providers: str = ""
    # Every rate-limit key starts with "<prefix>:<tenant>:"; deployments sharing a Redis differ here.
    rate_limit_prefix: str = "floworch"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _coerce(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __post_init__(self) -> None:
        self.node_queue_rules()  # a typo in the pins fails at start, not when a run needs them

    # -- derived values -------------------------------------------------------------
    def node_queue_rules(self) -> list[tuple[str, str]]:
        """``node_task_queues`` as (node type glob, task queue) pairs, in the order given."""
        rules = []
        for item in filter(None, (part.strip() for part in self.node_task_queues.split(","))):
            pattern, sep, queue = (x.strip() for x in item.partition("="))
            if not sep or not pattern or not queue:
                raise ValueError(
                    f"{ENV_PREFIX}NODE_TASK_QUEUES: {item!r} is not 'node type glob=task queue' "
                    "(e.g. 'ai.*=gpu,action.db_write=db')"
                )
            rules.append((pattern, queue))
        return rules

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def runtime_file(self) -> Path:
        return self.data_path / "runtime.json"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'floworch.db'}"

    @property
    def traces_file(self) -> Path:
        return self.data_path / "traces.jsonl"

    @property
    def embedded(self) -> bool:
        """True when Temporal is the dev server started by this data directory's supervisor."""
        return not self.temporal_address

    def resolved_temporal_address(self) -> str:
        """The Temporal frontend to connect to; for the embedded server, read runtime.json."""
        if self.temporal_address:
            return self.temporal_address
        try:
            runtime = json.loads(self.runtime_file.read_text())
        except FileNotFoundError:
            raise RuntimeError(
                f"No Temporal server configured and none running for data directory {self.data_path}: "
                "start one with `make run` (or `floworch-services`), or set FLOWORCH_TEMPORAL_ADDRESS."
            ) from None
        return runtime["temporal_address"]

    def user_name(self) -> str:
        if self.user:
            return self.user
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            return "unknown"

    def as_env(self) -> dict[str, str]:
        """These settings as FLOWORCH_* variables, for child processes."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                value = "1" if value else "0"
            env[ENV_PREFIX + f.name.upper()] = str(value)
        return env

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    if kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{f.name.upper()} must be an integer, got {raw!r}") from None
    return raw
