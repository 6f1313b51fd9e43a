"""The outbound-address guard (SSRF) and action.http's redirects and timeouts.

Internal addresses - private, loopback, link-local, cloud metadata, and IPv6 or odd IPv4
spellings of them - are refused before any connection, after DNS resolution and on every
redirect hop, unless FLOWORCH_HTTP_ALLOW lists them. Allowed requests connect to the very
address that was checked.

No test here sends a packet beyond loopback: names resolve through a table in the test, and
every connection attempt is recorded and must be to 127.0.0.1 or ::1.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpcore
import pytest

from conftest import finished, nodes_by_id
from floworch_server import netguard, nodes
from floworch_server.netguard import AllowList
from floworch_server.nodes.spec import NodeError

HTTP = nodes.require("action.http")
assert HTTP.execute is not None
http_execute = HTTP.execute

# Names the guard resolves in these tests: no DNS traffic, and answers the test controls.
HOSTS = {
    "localhost": ["127.0.0.1"],
    "api.example.test": ["127.0.0.1"],
    "intranet.example": ["10.1.2.3"],
    "metadata.google.internal": ["169.254.169.254"],
    "mixed.example.test": ["127.0.0.1", "10.0.0.1"],
    "ip6-localhost": ["::1"],
}
SYSTEM_RESOLVER = netguard.getaddrinfo


class FakeContext:
    """The part of activities.NodeContext an executor uses."""

    def __init__(self):
        self.idempotency_key = "run-1:call"
        self.attempt = 1
        self.logs: list[tuple[str, str]] = []

    def log(self, level: str, message: str, **extra):
        self.logs.append((level, message))


@pytest.fixture(autouse=True)
def resolver(monkeypatch):
    """Resolve from HOSTS (a list per name is one answer; a callable answers per call)."""
    calls: list[str] = []

    async def getaddrinfo(host: str, port: int) -> list[str]:
        calls.append(host)
        answer = HOSTS.get(host.rstrip(".").lower())
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer() if callable(answer) else list(answer)

    monkeypatch.setattr(netguard, "getaddrinfo", getaddrinfo)
    return calls


@pytest.fixture(autouse=True)
def connections(monkeypatch):
    """Every TCP connect httpx makes; one to anywhere but loopback fails the test unconnected."""
    made: list[str] = []
    real = httpcore.AnyIOBackend.connect_tcp

    async def connect_tcp(self, host, port, *args, **kwargs):
        made.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            pytest.fail(f"the test tried to connect to {host}, outside loopback")
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    return made


@pytest.fixture
def allow(monkeypatch):
    """Set the executor's allow-list (the session's worker allows 127.0.0.1; here it starts empty)."""

    def set_to(value: str) -> None:
        monkeypatch.setenv("FLOWORCH_HTTP_ALLOW", value)

    set_to("")
    return set_to


class Server:
    """A loopback HTTP server. /ok answers what it received; /redirect?to=U&status=S redirects;
    /slow?seconds=S answers late; /drip sends its body a byte every 0.2 s."""

    def __init__(self, host: str = "127.0.0.1"):
        self.seen: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._handle()

            do_POST = do_PUT = do_HEAD = do_GET

            def _handle(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode() if length else None
                path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
                seen = {
                    "method": self.command,
                    "path": path,
                    "host": self.headers.get("Host"),
                    "auth": self.headers.get("Authorization"),
                    "key": self.headers.get("Idempotency-Key"),
                    "body": body,
                }
                server.seen.append(seen)
                if path == "/redirect":
                    self.send_response(int(query.get("status", ["302"])[0]))
                    self.send_header("Location", query["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "/slow":
                    time.sleep(float(query["seconds"][0]))
                if path == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Length", "20")
                    self.end_headers()
                    for _ in range(20):
                        time.sleep(0.2)
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    return
                data = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.httpd = type(
            "Httpd",
            (ThreadingHTTPServer,),
            {"address_family": family, "daemon_threads": True, "handle_error": lambda *a: None},
        )((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def server6():
    try:
        s = Server("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield s
    s.close()


async def call(url: str, ctx: FakeContext | None = None, **config) -> dict:
    return await http_execute(ctx or FakeContext(), {"url": url, **config}, {})


async def refused(url: str, **config) -> NodeError:
    with pytest.raises(NodeError) as caught:
        await call(url, **config)
    return caught.value


# -- the corpus: each is refused with an empty allow-list, before any connection -------------

# (URL, refused address, words of the reason); {port} is a loopback server's port.
CORPUS = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "cloud metadata service"),
    ("http://metadata.google.internal/computeMetadata/v1/", "169.254.169.254", "cloud metadata service"),
    ("http://100.100.100.200/latest/meta-data/", "100.100.100.200", "Alibaba Cloud metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254", "AWS EC2 metadata"),
    ("http://127.0.0.1:{port}/ok", "127.0.0.1", "loopback"),
    ("http://localhost:{port}/ok", "127.0.0.1", "loopback"),
    ("http://[::1]:{port}/ok", "::1", "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/ok", "::ffff:7f00:1", "IPv4-mapped form of 127.0.0.1, a loopback"),
    ("http://2130706433:{port}/ok", "127.0.0.1", "loopback"),
    ("http://0x7f000001:{port}/ok", "127.0.0.1", "loopback"),
    ("http://0177.0.0.1:{port}/ok", "127.0.0.1", "loopback"),
    ("http://127.1:{port}/ok", "127.0.0.1", "loopback"),
    ("http://0.0.0.0:{port}/ok", "0.0.0.0", "unspecified"),
    ("http://[::]:{port}/ok", "::", "unspecified"),
    ("http://10.0.0.1/", "10.0.0.1", "private address"),
    ("http://172.16.5.4/", "172.16.5.4", "private address"),
    ("http://192.168.1.1/", "192.168.1.1", "private address"),
    ("http://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"),
    ("http://169.254.10.10/", "169.254.10.10", "link-local"),
    ("http://[fe80::1]/", "fe80::1", "link-local"),
    ("http://[fd00::1]/", "fd00::1", "unique-local"),
    ("http://224.0.0.1/", "224.0.0.1", "multicast"),
    ("http://[ff02::1]/", "ff02::1", "multicast"),
    ("http://240.0.0.1/", "240.0.0.1", "reserved"),
    ("http://[64:ff9b::a00:1]/", "64:ff9b::a00:1", "NAT64 form of 10.0.0.1"),
    ("http://[2002:7f00:1::]/", "2002:7f00:1::", "6to4 form of 127.0.0.1"),
    ("http://[::10.0.0.1]/", "::a00:1", "IPv4-compatible form of 10.0.0.1"),
    ("http://intranet.example/", "10.1.2.3", "private address"),
]


@pytest.mark.parametrize(("url", "address", "reason"), CORPUS, ids=[c[0] for c in CORPUS])
async def test_an_internal_address_is_refused_before_any_connection(url, address, reason, allow, server, connections):
    error = await refused(url.format(port=server.port), method="POST", json={"x": 1})
    assert (error.retryable, error.kind) == (False, "AddressRefused")
    message = str(error)
    assert f"refused to connect to {ipaddress.ip_address(address)}" in message and reason in message
    assert "FLOWORCH_HTTP_ALLOW" in message
    assert connections == [] and server.seen == []


async def test_the_real_resolver_refuses_localhost_too(allow, server, connections, monkeypatch):
    monkeypatch.setattr(netguard, "getaddrinfo", SYSTEM_RESOLVER)  # /etc/hosts, not the table
    error = await refused(f"http://localhost:{server.port}/ok")
    assert "(host 'localhost')" in str(error) and "loopback" in str(error)
    assert server.seen == []


async def test_every_resolved_address_must_be_allowed_not_just_the_first(allow, server, connections):
    allow("127.0.0.1")
    error = await refused(f"http://mixed.example.test:{server.port}/ok")
    assert "refused to connect to 10.0.0.1 (host 'mixed.example.test')" in str(error)
    assert connections == [] and server.seen == []


def test_public_addresses_pass_and_the_refusal_reasons_name_the_range():
    for public in ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]:
        assert netguard.refusal_reason(ipaddress.ip_address(public)) is None, public
    assert netguard.refusal_reason(ipaddress.ip_address("169.254.170.2")) == "the AWS ECS task metadata service"
    assert netguard.refusal_reason(ipaddress.ip_address("192.0.0.192")) == "the Oracle Cloud metadata service"
    assert "Teredo" in netguard.refusal_reason(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))


def test_legacy_ipv4_spellings_are_read_as_the_resolver_reads_them():
    for spelling in ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "127.0.0.1."]:
        assert netguard.literal_address(spelling) == ipaddress.ip_address("127.0.0.1"), spelling
    assert netguard.literal_address("example.com") is None


# -- the allow-list ------------------------------------------------------------------------------


def test_the_allow_list_takes_hosts_wildcards_ips_and_cidrs():
    allow = AllowList.parse(" billing.internal., *.corp.example, 10.20.0.0/16, 127.0.0.1, [::1] ,")
    assert allow.allows_host("Billing.Internal") and allow.allows_host("a.corp.example")
    assert not allow.allows_host("corp.example") and not allow.allows_host("evilcorp.example")
    assert allow.allows_address(ipaddress.ip_address("10.20.3.4"))
    assert not allow.allows_address(ipaddress.ip_address("10.21.0.1"))
    # The IPv4-mapped form is the same destination as the IPv4 address.
    assert allow.allows_address(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert allow.allows_address(ipaddress.ip_address("::1"))
    assert not allow.allows_address(ipaddress.ip_address("127.0.0.2"))


async def test_an_allowed_cidr_lets_a_name_resolve_into_it_without_connecting():
    assert await netguard.resolve("intranet.example", 80, AllowList.parse("10.0.0.0/8")) == [
        ipaddress.ip_address("10.1.2.3")
    ]
    assert await netguard.resolve("intranet.example", 80, AllowList.parse("intranet.example")) == [
        ipaddress.ip_address("10.1.2.3")
    ]
    with pytest.raises(netguard.AddressRefused):
        await netguard.resolve("intranet.example", 80, AllowList.parse("10.0.0.0/16"))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:{port}/ok", "127.0.0.1"),
        ("http://127.0.0.1:{port}/ok", "127.0.0.0/8"),
        ("http://localhost:{port}/ok", "localhost"),
        ("http://localhost:{port}/ok", "127.0.0.1"),
        ("http://2130706433:{port}/ok", "127.0.0.1"),
        ("http://0x7f000001:{port}/ok", "127.0.0.1"),
    ],
)
async def test_an_allow_listed_address_reaches_the_server(url, allowed, allow, server, connections):
    allow(allowed)
    result = await call(url.format(port=server.port))
    assert result["status"] == 200 and result["body"]["path"] == "/ok"
    assert connections == ["127.0.0.1"]


async def test_an_allow_listed_ipv6_loopback_reaches_the_server(allow, server6, connections):
    allow("::1")
    result = await call(f"{server6.base}/ok")
    assert result["status"] == 200 and connections == ["::1"]


async def test_an_octal_spelling_that_is_allowed_still_fails_as_an_invalid_url(allow, server, connections):
    # httpx does not accept 0177.0.0.1; nothing is sent, and the error says why.
    allow("127.0.0.1")
    error = await refused(f"http://0177.0.0.1:{server.port}/ok")
    assert (error.kind, error.retryable) == ("HttpInvalidUrl", False)
    assert connections == []


async def test_the_connection_goes_to_the_checked_address_with_the_original_host_header(
    allow, server, resolver, connections
):
    allow("api.example.test")
    result = await call(f"http://api.example.test:{server.port}/ok")
    assert result["body"]["host"] == f"api.example.test:{server.port}"
    assert connections == ["127.0.0.1"] and resolver == ["api.example.test"]


async def test_a_name_that_rebinds_after_the_check_cannot_redirect_the_connection(allow, server, resolver, connections):
    # First answer: allowed loopback. Any later answer: a private address. The guard resolves
    # once per connection and connects to what it checked, so the later answer is never used.
    answers = iter([["127.0.0.1"]])
    HOSTS["rebind.example.test"] = lambda: next(answers, ["10.0.0.1"])
    try:
        allow("127.0.0.1")
        result = await call(f"http://rebind.example.test:{server.port}/ok")
    finally:
        del HOSTS["rebind.example.test"]
    assert result["status"] == 200
    assert resolver == ["rebind.example.test"] and connections == ["127.0.0.1"]


# -- redirects: followed by the node, every hop checked ------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://[::1]:{port}/ok",
        "http://ip6-localhost:{port}/ok",
        "http://127.0.0.2:{port}/ok",
        "http://169.254.169.254/latest/meta-data/",
        "http://intranet.example/",
        "http://0x7f000002:{port}/ok",
        "http://0177.0.0.2:{port}/ok",
    ],
)
async def test_a_redirect_to_an_internal_address_is_refused_at_that_hop(target, allow, server, connections):
    allow("127.0.0.1")  # the first hop only
    target = target.format(port=server.port)
    error = await refused(f"{server.base}/redirect?to={target}", method="POST", json={"x": 1})
    assert (error.kind, error.retryable) == ("AddressRefused", False)
    assert f"on a redirect from {server.base}/redirect" in str(error) and "FLOWORCH_HTTP_ALLOW" in str(error)
    assert [s["path"] for s in server.seen] == ["/redirect"]
    assert connections == ["127.0.0.1"]


async def test_allowed_redirects_are_followed_as_browsers_do(allow, server):
    allow("127.0.0.1")
    ctx = FakeContext()
    # 303: the next request is a GET without the body.
    result = await call(f"{server.base}/redirect?to=/ok&status=303", ctx, method="POST", json={"x": 1})
    assert (result["status"], result["body"]["method"], result["body"]["body"]) == (200, "GET", None)
    assert result["url"] == f"{server.base}/ok"
    assert result["body"]["key"] == "run-1:call"
    assert ctx.logs == [
        ("info", f"POST {server.base}/redirect?to=/ok&status=303 -> 303, redirected to {server.base}/ok"),
        ("info", f"GET {server.base}/ok -> 200"),
    ]
    # 307: same method, same body.
    result = await call(f"{server.base}/redirect?to=/ok&status=307", method="POST", json={"x": 1})
    assert (result["body"]["method"], json.loads(result["body"]["body"])) == ("POST", {"x": 1})


async def test_authorization_is_kept_on_the_same_origin_and_dropped_for_another(allow, server):
    allow("127.0.0.1")
    other = Server()
    try:
        # PUT: a write, so the request carries the idempotency key, which goes on to any origin.
        same = await call(f"{server.base}/redirect?to=/ok", method="PUT", headers={"Authorization": "Bearer s3cret"})
        elsewhere = await call(
            f"{server.base}/redirect?to={other.base}/ok", method="PUT", headers={"Authorization": "Bearer s3cret"}
        )
    finally:
        other.close()
    assert same["body"]["auth"] == "Bearer s3cret"
    assert elsewhere["body"]["auth"] is None and elsewhere["body"]["key"] == "run-1:call"


async def test_more_redirects_than_max_redirects_fail_the_node_without_retries(allow, server):
    allow("127.0.0.1")
    loop = f"{server.base}/redirect?to=/redirect%3Fto%3D/ok"
    assert (await call(loop, max_redirects=2))["status"] == 200
    error = await refused(loop, max_redirects=1)
    assert (error.kind, error.retryable) == ("HttpTooManyRedirects", False)
    assert "more than 1 redirects (max_redirects)" in str(error)


async def test_with_follow_redirects_off_the_redirect_is_the_output(allow, server):
    allow("127.0.0.1")
    result = await call(f"{server.base}/redirect?to=http://169.254.169.254/", follow_redirects=False)
    assert (result["status"], result["headers"]["location"]) == (302, "http://169.254.169.254/")


async def test_a_redirect_to_another_scheme_is_not_followed(allow, server):
    allow("127.0.0.1")
    error = await refused(f"{server.base}/redirect?to=file:///etc/passwd")
    assert (error.kind, error.retryable) == ("HttpRedirectRefused", False)


# -- timeouts ---------------------------------------------------------------------------------


async def test_a_slow_answer_times_out_and_may_be_retried(allow, server):
    allow("127.0.0.1")
    error = await refused(f"{server.base}/slow?seconds=2", timeout_seconds=0.3)
    assert (error.kind, error.retryable) == ("HttpTimeout", True)
    assert "timed out" in str(error)


async def test_the_total_timeout_bounds_a_body_that_keeps_trickling(allow, server):
    # Each byte comes within the read timeout; the whole body does not come within the total.
    allow("127.0.0.1")
    started = time.monotonic()
    error = await refused(f"{server.base}/drip", timeout_seconds={"read": 1, "total": 0.8})
    assert error.kind == "HttpTimeout" and "within 0.8s" in str(error)
    assert time.monotonic() - started < 2
    error = await refused(f"{server.base}/slow?seconds=2", timeout_seconds={"read": 0.3, "total": 5})
    assert "read took longer than 0.3s" in str(error)


# -- through the engine ---------------------------------------------------------------------------


async def test_a_refused_address_fails_the_node_at_once_with_the_reason_and_the_fix(service, published):
    flow = await published(
        [
            {"id": "start", "type": "trigger.manual"},
            {"id": "call", "type": "action.http", "config": {"url": "http://169.254.169.254/latest/meta-data/iam/"}},
        ],
        [("start", "call")],
    )
    run = await finished(service, (await service.start_run(flow, by="t"))["run_id"])
    call_node = nodes_by_id(run)["call"]
    assert (run["status"], call_node["status"], call_node["attempts"]) == ("failed", "failed", 1)
    assert "refused to connect to 169.254.169.254" in call_node["error"]
    assert "cloud metadata service" in call_node["error"] and "FLOWORCH_HTTP_ALLOW" in call_node["error"]
