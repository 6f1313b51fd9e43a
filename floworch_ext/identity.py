"""Who a request is, for every FlowOrchestrator route and for the collaboration rooms.

Jupyter's identity provider stays in charge: the extension only teaches it one more credential,
a FlowOrchestrator access token (``Authorization: Bearer <JWT>``, see floworch_server.auth).
Wrapping the provider the server already has (token, password, JupyterHub's) means a token works
on every handler Jupyter authenticates, the collaboration room socket included, with no change
to how people in JupyterLab sign in.

A request's tenant is its token's; a Jupyter user names one with the ``X-Floworch-Tenant``
header (or the ``tenant`` query argument, for sockets), else the deployment's own. Naming a
tenant the token is not for, or one the user is not a member of, is refused.
"""

from __future__ import annotations

import inspect
from typing import Any, overload

from jupyter_server.auth.identity import User

from floworch_server.auth import Forbidden, Principal, Unauthorized
from floworch_server.errors import BadRequest
from floworch_server.store import check_tenant

TENANT_HEADER = "X-Floworch-Tenant"
# What the wrapped identity provider leaves on a handler it authenticated by an access token.
CLAIMS = "_floworch_claims"
TOKEN_ERROR = "_floworch_token_error"


def bearer_jwt(handler: Any) -> str | None:
    """The request's Bearer token when it has the shape of a JWT (Jupyter's own tokens have no dots)."""
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value.count(".") == 2:
        return value
    return None


def install(identity_provider: Any, runtime: Any) -> None:
    """Make ``identity_provider`` accept FlowOrchestrator access tokens before its own credentials."""
    original = identity_provider.get_user

    async def get_user(handler: Any) -> User | None:
        if bearer_jwt(handler) is not None:
            claims = verified_claims(handler, runtime)
            if claims is None:
                return None
            # A header credential, like Jupyter's own token: no cookie, so no XSRF check needed.
            handler._token_authenticated = True
            return User(username=claims["sub"], name=claims["sub"])
        user = original(handler)
        return await user if inspect.isawaitable(user) else user

    identity_provider.get_user = get_user


def verified_claims(handler: Any, runtime: Any) -> dict | None:
    """The claims of the request's access token, verified once per request (the outcome is kept
    on the handler: the claims, or the error that ``refuse_bad_token`` answers with)."""
    claims, error = getattr(handler, CLAIMS, None), getattr(handler, TOKEN_ERROR, None)
    if claims is None and error is None and (token := bearer_jwt(handler)) is not None:
        try:
            claims = runtime.tokens.verify(token)
            setattr(handler, CLAIMS, claims)
        except Unauthorized as exc:
            setattr(handler, TOKEN_ERROR, exc)
    return claims


def refuse_bad_token(handler: Any) -> None:
    """A request that sends an access token that does not verify is a 401 saying why, not
    Jupyter's bare 403 (checked before Jupyter's own checks, which would refuse it first)."""
    verified_claims(handler, handler.settings["floworch"])
    error = getattr(handler, TOKEN_ERROR, None)
    if error is not None:
        raise error


def user_name(user: Any) -> str:
    return getattr(user, "username", None) or getattr(user, "name", None) or str(user)


def principal(handler: Any, runtime: Any) -> Principal:
    """The principal of an authenticated request (its user, tenant and role there)."""
    refuse_bad_token(handler)
    user = handler.current_user
    if user is None:
        # As Jupyter answers a request with no credentials: 403 (401 is for a token that failed).
        raise Forbidden(
            "not signed in: sign in to JupyterLab, or send a token (Authorization: token ... or Bearer ...)"
        )
    named = handler.request.headers.get(TENANT_HEADER) or handler.get_query_argument("tenant", None)
    claims = getattr(handler, CLAIMS, None)
    if claims is not None:
        if named and named != claims["ten"]:
            raise Forbidden(f"the access token is for tenant '{claims['ten']}', not '{named}'")
        return runtime.roles.principal(claims["sub"], claims["ten"], "token")
    tenant = named or runtime.settings.tenant
    try:
        check_tenant(tenant)
    except ValueError as exc:
        raise BadRequest(str(exc), field=TENANT_HEADER) from None
    return runtime.roles.principal(user_name(user), tenant, "jupyter")


@overload
def authorize(handler: Any, runtime: Any, permission: str) -> Principal: ...
@overload
def authorize(handler: Any, runtime: Any, permission: None) -> None: ...
def authorize(handler: Any, runtime: Any, permission: str | None) -> Principal | None:
    """The request's principal, after checking it has ``permission`` (None: the route checks itself)."""
    if permission is None:
        refuse_bad_token(handler)
        return None
    found = principal(handler, runtime)
    found.require(permission)
    return found
