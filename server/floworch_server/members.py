"""A tenant's members and their roles, changed by its admins; every change is audited.

One rule beyond the role check: a tenant never loses its last admin member by a change here,
or nobody could manage it any more (short of the operator's database).
"""

from __future__ import annotations

from typing import Any

from .auth import check_role
from .errors import BadRequest, Conflict, NotFound


def _check_user(user: Any) -> str:
    if not isinstance(user, str) or not user.strip() or len(user) > 255:
        raise BadRequest("must be a user name of 1 to 255 characters", field="user")
    return user


def list_members(store: Any) -> list[dict]:
    return store.list_members()


def set_member(store: Any, user: str, role: str, *, by: str) -> dict:
    """Add ``user`` with ``role``, or change their role."""
    _check_user(user)
    try:
        check_role(role)
    except ValueError as exc:
        raise BadRequest(str(exc), field="role") from None
    before = store.get_member(user)
    if before is not None and before["role"] == "admin" and role != "admin":
        _keep_an_admin(store, user)
    store.add_member(user, role, by)
    store.audit(
        by, "member.update" if before else "member.add", user, {"role": role, "was": before["role"] if before else None}
    )
    return store.get_member(user)


def remove_member(store: Any, user: str, *, by: str) -> None:
    before = store.get_member(_check_user(user))
    if before is None:
        raise NotFound("member", user)
    if before["role"] == "admin":
        _keep_an_admin(store, user)
    store.remove_member(user)
    store.audit(by, "member.remove", user, {"was": before["role"]})


def _keep_an_admin(store: Any, leaving: str) -> None:
    if not any(m["role"] == "admin" and m["user"] != leaving for m in store.list_members()):
        raise Conflict(f"'{leaving}' is the last admin of tenant '{store.tenant}': make someone else admin first")
