"""A real OAuth 2.0 authorization server on 127.0.0.1, built from Authlib's server components,
with a small protected API beside it (the provider's REST API a node calls).

- ``GET /authorize``: the authorization endpoint (authorization code + PKCE S256, RFC 7636). The
  resource owner is already signed in at the provider and consents at once, unless the test
  said ``consent = False``: then it answers ``error=access_denied``, as a person clicking "Deny".
- ``POST /token``: authorization_code and refresh_token grants (client_secret_basic or _post);
  every refresh issues a new refresh token and revokes the old one (rotation).
- ``POST /revoke``: RFC 7009 revocation.
- Any other path: the protected API; a valid bearer token gets ``201`` with the JSON body echoed
  (``{"id", "properties"}``, as HubSpot's contacts API answers), anything else ``401``.

The test controls the provider's side of the story: ``access_seconds`` (the ``expires_in`` of
new access tokens), ``invalidate_access_tokens()`` (the provider drops live tokens: the next call
gets a 401) and ``expire_refresh_tokens()``.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Error,
    OAuth2Request,
    ResourceProtector,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge

# Authlib's server refuses plain http unless told; this one only listens on loopback.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
OWNER = "owner@provider.test"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scope: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or self.scope).split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # A test registers the callback of the Jupyter server it starts; any path on it is fine.
        return any(redirect_uri.startswith(prefix) for prefix in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Token(TokenMixin):
    access_token: str
    refresh_token: str | None
    client_id: str
    scope: str
    user: str
    expires_in: int
    issued_at: float = field(default_factory=time.time)
    access_revoked: bool = False
    refresh_revoked: bool = False
    refresh_expired: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Client:
        raise NotImplementedError


class Request(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: dict, args: dict, form: dict):
        super().__init__(method, uri, headers=headers)
        self._args, self._form = args, form
        self.payload = BasicOAuth2Payload({**args, **form})

    @property
    def args(self) -> dict:
        return self._args

    @property
    def form(self) -> dict:
        return self._form


class LocalAuthorizationServer:
    """Start with ``with LocalAuthorizationServer() as provider:``; register a client with `client`."""

    def __init__(self, scope: str = "crm.objects.contacts.write") -> None:
        self.scope = scope
        self.consent = True
        self.access_seconds = 3600
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.tokens: list[Token] = []
        # What the protected API saw: {"method", "path", "token", "status"}.
        self.api_requests: list[dict[str, Any]] = []
        self.token_requests: list[str] = []  # grant types, in order
        self.authorization_requests: list[dict[str, str]] = []  # query parameters of /authorize
        self.revoked: list[str] = []  # token_type_hints of successful revocations
        self._lock = threading.Lock()
        self.server = self._authorization_server()
        self.protector = ResourceProtector()
        self.protector.register_token_validator(_Validator(self))
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"

    # ---------------------------------------------------------------- test controls
    def client(self, *redirect_uri_prefixes: str) -> Client:
        client = Client(
            f"client-{secrets.token_hex(4)}", secrets.token_urlsafe(24), list(redirect_uri_prefixes), self.scope
        )
        self.clients[client.client_id] = client
        return client

    def invalidate_access_tokens(self) -> None:
        with self._lock:
            for token in self.tokens:
                token.access_revoked = True

    def expire_refresh_tokens(self) -> None:
        with self._lock:
            for token in self.tokens:
                token.refresh_expired = True

    def token(self, access_or_refresh: str) -> Token | None:
        return next((t for t in self.tokens if access_or_refresh in (t.access_token, t.refresh_token)), None)

    def live_tokens(self) -> list[Token]:
        """Tokens whose access token or refresh token still works."""
        return [
            t
            for t in self.tokens
            if (not t.access_revoked and not t.is_expired())
            or (t.refresh_token and not t.refresh_revoked and not t.refresh_expired)
        ]

    # ---------------------------------------------------------------- Authlib's server
    def _authorization_server(self) -> AuthorizationServer:
        owner = self

        class Server(AuthorizationServer):
            def query_client(self, client_id):
                return owner.clients.get(client_id)

            def save_token(self, token, request):
                owner.tokens.append(
                    Token(
                        token["access_token"],
                        token.get("refresh_token"),
                        request.client.client_id,
                        token.get("scope", ""),
                        request.user,
                        token["expires_in"],
                    )
                )

            def create_oauth2_request(self, request):
                return request

            def handle_response(self, status, body, headers):
                return status, body, headers

            def send_signal(self, name, *args, **kwargs):
                pass

        class CodeGrant(AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

            def save_authorization_code(self, code, request):
                data = request.payload.data
                owner.codes[code] = Code(
                    code, request.client.client_id, data.get("redirect_uri"), request.scope or "", request.user,
                    data.get("code_challenge"), data.get("code_challenge_method"),
                )  # fmt: skip

            def query_authorization_code(self, code, client):
                found = owner.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code):
                owner.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class RefreshGrant(RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
            INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

            def authenticate_refresh_token(self, refresh_token):
                token = next((t for t in owner.tokens if t.refresh_token == refresh_token), None)
                if token and not token.refresh_revoked and not token.refresh_expired:
                    return token
                return None

            def authenticate_user(self, credential):
                return credential.user

            def revoke_old_credential(self, credential):
                credential.refresh_revoked = True
                credential.access_revoked = True

        class Revocation(RevocationEndpoint):
            CLIENT_AUTH_METHODS = AUTH_METHODS

            def query_token(self, token_string, token_type_hint):
                return owner.token(token_string)

            def revoke_token(self, token, request):
                hint = request.form.get("token_type_hint")
                if hint == "access_token":
                    token.access_revoked = True
                else:  # revoking a refresh token ends the grant (RFC 7009 2.1)
                    token.refresh_revoked = token.access_revoked = True
                owner.revoked.append(hint or "unknown")

        server = Server()
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: "at-" + secrets.token_urlsafe(24),
                refresh_token_generator=lambda **_: "rt-" + secrets.token_urlsafe(24),
                expires_generator=lambda client, grant_type: owner.access_seconds,
            ),
        )
        server.register_grant(CodeGrant, [CodeChallenge(required=True)])
        server.register_grant(RefreshGrant)
        server.register_endpoint(Revocation)
        return server

    # ---------------------------------------------------------------- HTTP
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _request(self) -> tuple[Request, Any]:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form, body = {}, None
                if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                    form = dict(parse_qsl(raw.decode()))
                elif raw:
                    body = json.loads(raw)
                headers = {k: v for k, v in self.headers.items()}
                return Request(self.command, owner.url + self.path, headers, dict(parse_qsl(url.query)), form), body

            def _send(self, status: int, body: Any, headers: Any = ()) -> None:
                data = body if isinstance(body, (bytes, str)) else json.dumps(body)
                data = data.encode() if isinstance(data, str) else data
                self.send_response(status)
                names = set()
                for name, value in headers:
                    self.send_header(name, value)
                    names.add(name.lower())
                if "content-type" not in names:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                request, _ = self._request()
                if urlsplit(self.path).path != "/authorize":
                    return self._api(request, None)
                with owner._lock:
                    owner.authorization_requests.append(dict(request.args))
                    try:
                        grant = owner.server.get_consent_grant(request, end_user=OWNER)
                    except OAuth2Error as error:
                        return self._send(400, {"error": error.error, "error_description": error.description})
                    answer = owner.server.create_authorization_response(
                        request, grant_user=OWNER if owner.consent else None, grant=grant
                    )
                self._send(*answer)

            def do_POST(self) -> None:
                request, body = self._request()
                path = urlsplit(self.path).path
                with owner._lock:
                    if path == "/token":
                        owner.token_requests.append(request.form.get("grant_type", ""))
                        return self._send(*owner.server.create_token_response(request))
                    if path == "/revoke":
                        return self._send(*owner.server.create_endpoint_response("revocation", request))
                self._api(request, body)

            do_PATCH = do_POST

            def _api(self, request: Request, body: Any) -> None:
                auth = request.headers.get("Authorization", "")
                seen = {"method": self.command, "path": urlsplit(self.path).path, "token": auth.removeprefix("Bearer ")}
                with owner._lock:
                    try:
                        owner.protector.validate_request(None, request)
                    except OAuth2Error as error:
                        owner.api_requests.append({**seen, "status": 401})
                        return self._send(
                            401,
                            {
                                "status": "error",
                                "message": f"{error.error}: {error.description}",
                                "category": "INVALID_AUTHENTICATION",
                            },
                        )
                    owner.api_requests.append({**seen, "status": 201})
                self._send(201, {"id": str(len(owner.api_requests)), "properties": (body or {}).get("properties", {})})

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> LocalAuthorizationServer:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._http.shutdown()
        self._http.server_close()

    # ---------------------------------------------------------------- endpoints
    @property
    def authorize_url(self) -> str:
        return self.url + "/authorize"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def revocation_url(self) -> str:
        return self.url + "/revoke"


class _Validator(BearerTokenValidator):
    def __init__(self, owner: LocalAuthorizationServer):
        super().__init__()
        self.owner = owner

    def authenticate_token(self, token_string: str) -> Token | None:
        return next((t for t in self.owner.tokens if t.access_token == token_string), None)
