"""Reaching a Temporal cluster over TLS: FLOWORCH_TEMPORAL_TLS_CA, _CERT, _KEY and _API_KEY.

A cluster's frontend terminates TLS (and, for mTLS, requires a client certificate signed by its
CA). The dev server speaks plain gRPC only, so here a TLS frontend made with Python's ``ssl`` sits
in front of the session's real dev server, with certificates made for the test: what reaches the
server went through a real TLS handshake with the SDK's client, from the kernel side as well as
from a worker process the supervisor starts with the same settings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.service import TLSConfig

from conftest import finished, flow_doc
from floworch_server import temporal
from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor


# ---------------------------------------------------------------------- certificates
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, issuer: tuple | None, *, ca: bool = False, server: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _write(directory: Path, name: str, cert, key) -> tuple[str, str]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """The cluster's CA, its frontend's certificate, a client certificate it issued, and a CA
    that has nothing to do with the cluster."""
    d = tmp_path_factory.mktemp("pki")
    ca = _issue("floworch test CA", None, ca=True)
    other_ca = _issue("some other CA", None, ca=True)
    paths = {}
    paths["ca"], _ = _write(d, "ca", *ca)
    paths["other_ca"], _ = _write(d, "other-ca", *other_ca)
    paths["server"], paths["server_key"] = _write(d, "server", *_issue("temporal-frontend", ca, server=True))
    paths["client"], paths["client_key"] = _write(d, "client", *_issue("floworch-worker", ca))
    return paths


# ---------------------------------------------------------------------- a TLS frontend
class TLSFrontend:
    """Accepts TLS (HTTP/2 by ALPN, as gRPC needs) on a free port and relays the decrypted
    stream to the dev server. With ``require_client_cert`` only clients whose certificate the
    CA issued get through; ``clients`` records the subject of each one that did."""

    def __init__(self, upstream: str, pki: dict[str, str], require_client_cert: bool) -> None:
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki["server"], pki["server_key"])
        self.context.set_alpn_protocols(["h2"])
        if require_client_cert:
            self.context.load_verify_locations(pki["ca"])
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.clients: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.address = ""
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context))
        self.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        started.set()
        self.loop.run_forever()
        server.close()
        # Relays still open (clients that never hung up) end here, before the loop closes.
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        self.clients.append(dict(x[0] for x in peer["subject"])["commonName"] if peer else "")
        host, port = self.upstream.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                if not self.loop.is_closed():
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def mtls_frontend(supervisor, pki):
    frontend = TLSFrontend(supervisor.address, pki, require_client_cert=True)
    yield frontend
    frontend.close()


@pytest.fixture
def tls_frontend(supervisor, pki):
    frontend = TLSFrontend(supervisor.address, pki, require_client_cert=False)
    yield frontend
    frontend.close()


def cluster_settings(tmp_path: Path, address: str, **tls: Any) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        temporal_address=address,
        task_queue=f"tls-{uuid.uuid4().hex[:8]}",  # only this test's worker polls it
        workers=1,
        otel_exporter="none",
        **tls,
    )


# ---------------------------------------------------------------------- end to end
async def test_a_flow_runs_over_mutual_tls_from_client_to_worker(mtls_frontend, pki, tmp_path):
    settings = cluster_settings(
        tmp_path,
        mtls_frontend.address,
        temporal_tls_ca=pki["ca"],
        temporal_tls_cert=pki["client"],
        temporal_tls_key=pki["client_key"],
    )
    # The supervisor of an external cluster registers the search attributes and starts a worker
    # process with the same settings: all of it through the TLS frontend.
    with Supervisor(settings):
        service = await FlowService.connect(settings)
        try:
            doc = flow_doc(
                [
                    {"id": "start", "type": "trigger.manual"},
                    {"id": "greet", "type": "transform", "config": {"output": "Hello, {{ input.name }}"}},
                ],
                [("start", "greet")],
            )
            record = service.create_workflow(doc, by="tester")
            await service.publish(record["id"], by="tester")
            started = await service.start_run(record["id"], input={"name": "mTLS"}, by="tester")
            run = await finished(service, started["run_id"])
        finally:
            service.store.close()
    assert run["status"] == "success" and run["result"] == {"outputs": {"greet": "Hello, mTLS"}}
    # The kernel side, the supervisor and the worker each came through with the client certificate.
    assert len(mtls_frontend.clients) >= 3 and set(mtls_frontend.clients) == {"floworch-worker"}


async def test_without_the_client_certificate_the_cluster_refuses_the_connection(mtls_frontend, pki, tmp_path):
    settings = cluster_settings(tmp_path, mtls_frontend.address, temporal_tls_ca=pki["ca"])
    with pytest.raises(RuntimeError, match="Failed client connect"):
        await temporal.connect(settings, traced=False)
    assert mtls_frontend.clients == []


async def test_a_frontend_whose_certificate_the_ca_did_not_issue_is_not_trusted(tls_frontend, pki, tmp_path):
    settings = cluster_settings(tmp_path, tls_frontend.address, temporal_tls_ca=pki["other_ca"])
    with pytest.raises(RuntimeError, match=r"InvalidCertificate\(UnknownIssuer\)"):
        await temporal.connect(settings, traced=False)
    assert tls_frontend.clients == []


async def test_an_api_key_goes_over_tls(tls_frontend, pki, tmp_path):
    settings = cluster_settings(tmp_path, tls_frontend.address, temporal_tls_ca=pki["ca"], temporal_api_key="key-123")
    client = await temporal.connect(settings, traced=False)
    assert client.api_key == "key-123"
    assert await client.service_client.check_health()
    assert len(tls_frontend.clients) == 1  # it came through the TLS frontend, not around it


# ---------------------------------------------------------------------- the settings alone
def test_plain_grpc_unless_tls_is_asked_for():
    assert temporal.tls_config(Settings()) is None
    assert temporal.tls_config(Settings(temporal_tls=True)) is True  # TLS with the system's CAs
    # An API key alone leaves it to the SDK, which then turns TLS on.
    assert temporal.tls_config(Settings(temporal_api_key="k")) is None


def test_certificate_paths_turn_tls_on_and_are_read(pki):
    ca_only = temporal.tls_config(Settings(temporal_tls_ca=pki["ca"]))
    assert isinstance(ca_only, TLSConfig) and ca_only.client_cert is None
    assert ca_only.server_root_ca_cert == Path(pki["ca"]).read_bytes()
    mtls = temporal.tls_config(Settings(temporal_tls_cert=pki["client"], temporal_tls_key=pki["client_key"]))
    assert isinstance(mtls, TLSConfig) and mtls.server_root_ca_cert is None  # the system's CAs
    assert mtls.client_cert == Path(pki["client"]).read_bytes()
    assert mtls.client_private_key == Path(pki["client_key"]).read_bytes()


@pytest.mark.parametrize("given", ["temporal_tls_cert", "temporal_tls_key"])
def test_half_a_certificate_pair_is_refused_naming_both_settings(given, pki):
    with pytest.raises(ValueError, match="mTLS needs both FLOWORCH_TEMPORAL_TLS_CERT and FLOWORCH_TEMPORAL_TLS_KEY"):
        temporal.tls_config(Settings(**{given: pki["client"]}))


@pytest.mark.parametrize("setting", ["temporal_tls_ca", "temporal_tls_cert", "temporal_tls_key"])
@pytest.mark.parametrize("problem", ["missing", "a directory"])
def test_an_unreadable_tls_file_is_refused_naming_it(setting, problem, pki, tmp_path):
    bad = str(tmp_path / "nope.pem") if problem == "missing" else str(tmp_path)
    values = {"temporal_tls_cert": pki["client"], "temporal_tls_key": pki["client_key"], setting: bad}
    with pytest.raises(ValueError, match=f"Cannot read Temporal TLS file '{bad}'"):
        temporal.tls_config(Settings(**values))


def test_tls_settings_come_from_the_environment(pki):
    settings = Settings.from_env(
        {
            "FLOWORCH_TEMPORAL_ADDRESS": "ns.a1b2c.tmprl.cloud:7233",
            "FLOWORCH_TEMPORAL_NAMESPACE": "ns.a1b2c",
            "FLOWORCH_TEMPORAL_TLS_CERT": pki["client"],
            "FLOWORCH_TEMPORAL_TLS_KEY": pki["client_key"],
        }
    )
    assert (settings.temporal_address, settings.temporal_namespace, settings.embedded) == (
        "ns.a1b2c.tmprl.cloud:7233",
        "ns.a1b2c",
        False,
    )
    assert temporal.tls_config(settings).client_cert == Path(pki["client"]).read_bytes()
