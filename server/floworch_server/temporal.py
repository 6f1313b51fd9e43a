"""Connecting to Temporal: client construction, health polling, search attributes.

Nothing here is cached at module level: the kernel, the Jupyter server and every worker
build their own client from a :class:`~floworch_server.settings.Settings`, and the embedded
server's address can change between runs (it is read from ``runtime.json``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import temporalio.api.operatorservice.v1
import temporalio.api.workflowservice.v1
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from . import tracing
from .settings import Settings

log = logging.getLogger(__name__)

# Every run carries these, so runs can be listed per flow, version, plan, trigger and tenant
# with a visibility query instead of scanning histories.
SEARCH_ATTRIBUTES: dict[str, SearchAttributeKey[str]] = {
    name: SearchAttributeKey.for_keyword(name)
    for name in (
        "FloworchFlowId",
        "FloworchVersion",
        "FloworchPlanHash",
        "FloworchTrigger",
        "FloworchTenant",
    )
}


def tls_config(settings: Settings) -> TLSConfig | bool | None:
    """The ``tls`` argument of ``Client.connect`` for these settings.

    ``None`` lets the SDK decide (it turns TLS on when an API key is given); certificate
    paths imply TLS even when ``temporal_tls`` is left off, since they mean nothing without it.
    """
    paths = (settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca)
    if not any(paths):
        return True if settings.temporal_tls else None
    if bool(settings.temporal_tls_cert) != bool(settings.temporal_tls_key):
        raise ValueError(
            "mTLS needs both FLOWORCH_TEMPORAL_TLS_CERT and FLOWORCH_TEMPORAL_TLS_KEY; only one of them is set."
        )

    def read(path: str) -> bytes | None:
        if not path:
            return None
        try:
            return Path(path).expanduser().read_bytes()
        except OSError as err:
            raise ValueError(f"Cannot read Temporal TLS file {path!r}: {err.strerror}") from None

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca),
        client_cert=read(settings.temporal_tls_cert),
        client_private_key=read(settings.temporal_tls_key),
    )


async def connect(settings: Settings, *, address: str | None = None, traced: bool = True, **kwargs) -> Client:
    """A new client for the configured (or embedded) Temporal frontend.

    ``address`` overrides the resolved one (the supervisor knows it before ``runtime.json``
    exists); extra keyword arguments go to ``Client.connect`` (e.g. ``identity``). With
    ``traced`` the client (and every worker built on it) carries the tracing interceptor of
    ``settings`` (see tracing.py); health checks and set-up calls start no runs and go without.
    """
    interceptors = [*(tracing.client_interceptors(settings) if traced else []), *kwargs.pop("interceptors", [])]
    return await Client.connect(
        address or settings.resolved_temporal_address(),
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key or None,
        interceptors=interceptors,
        **kwargs,
    )


async def list_search_attributes(client: Client, namespace: str) -> dict[str, int]:
    """Custom search attributes of a namespace: name -> ``IndexedValueType`` value."""
    resp = await client.operator_service.list_search_attributes(
        temporalio.api.operatorservice.v1.ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(resp.custom_attributes)


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the missing Floworch* search attributes; returns the names that were added.

    Safe to call on every start and from several processes at once: an attribute that
    appears between the listing and the add is not an error.
    """
    existing = await list_search_attributes(client, namespace)
    wanted = {name: int(key.indexed_value_type) for name, key in SEARCH_ATTRIBUTES.items()}
    for name, kind in wanted.items():
        if name in existing and existing[name] != kind:
            raise RuntimeError(
                f"Search attribute {name} exists in namespace {namespace!r} with type "
                f"{existing[name]}, not Keyword; runs cannot be indexed by it."
            )
    missing: dict[str, Any] = {
        name: kind for name, kind in wanted.items() if name not in existing
    }  # kind: an IndexedValueType
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            temporalio.api.operatorservice.v1.AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            if err.status == RPCStatusCode.PERMISSION_DENIED:
                raise RuntimeError(
                    f"Not allowed to add search attributes {sorted(missing)} to namespace "
                    f"{namespace!r}; ask the cluster administrator to add them as Keyword "
                    "(on Temporal Cloud: `tcld namespace search-attributes add`)."
                ) from err
            raise
    log.info("registered search attributes %s in namespace %s", sorted(missing), namespace)
    return sorted(missing)


def port_open(address: str, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


async def wait_until_healthy(
    address: str,
    timeout: float = 30.0,
    *,
    settings: Settings | None = None,
    interval: float = 0.05,
) -> None:
    """Return once the frontend at ``address`` serves requests for the namespace.

    Polls the TCP port first and only then builds a client: failed SDK connections are
    slow to give up and leave work behind in the SDK's runtime thread.
    """
    settings = settings or Settings(temporal_address=address)
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if await asyncio.to_thread(port_open, address):
            try:
                client = await connect(settings, address=address, traced=False)
                if await client.service_client.check_health(timeout=_seconds(1)):
                    await client.workflow_service.describe_namespace(
                        temporalio.api.workflowservice.v1.DescribeNamespaceRequest(
                            namespace=settings.temporal_namespace
                        ),
                        timeout=_seconds(2),
                    )
                    return
            except Exception as err:  # noqa: BLE001 - any failure means "not yet"
                last_error = err
        await asyncio.sleep(interval)
    detail = f": {last_error}" if last_error else " (port closed)"
    raise TimeoutError(f"Temporal at {address} not healthy after {timeout:.0f} s{detail}")


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


__all__ = [
    "SEARCH_ATTRIBUTES",
    "connect",
    "ensure_search_attributes",
    "list_search_attributes",
    "port_open",
    "tls_config",
    "wait_until_healthy",
]
