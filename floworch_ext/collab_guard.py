"""Roles in the collaboration rooms of flows: a viewer watches a flow live but cannot change it.

jupyter-collaboration lets every authenticated user write to every room. For ``.flow`` rooms
(``text:flow:<fileId>``) the extension reads each incoming message's type first:

- awareness (pointers, selections, who is editing) and the sync request (``SYNC_STEP1``, which
  only asks for what the client lacks) pass for every member;
- document changes (``SYNC_STEP2`` and ``SYNC_UPDATE``) pass only for editors and admins: the
  server drops a viewer's, so they never reach the room, the file on disk or anyone else;
- someone who is not a member of the server's tenant is disconnected.

The role is the user's in the deployment's own tenant (``FLOWORCH_TENANT``): the files a Jupyter
server serves are that tenant's. Roles are cached for a moment (auth.ROLE_CACHE_SECONDS), so a
change of role reaches open rooms within that time.
"""

from __future__ import annotations

import logging
from typing import Any

from pycrdt import YMessageType, YSyncMessageType

from floworch_server.auth import Principal

from .identity import CLAIMS, user_name

FLOW_ROOM_PREFIX = "text:flow:"
NOT_A_MEMBER = 4403  # close code, in the 4000s that jupyter-collaboration uses for its own refusals
DOCUMENT_CHANGES = (YSyncMessageType.SYNC_STEP2, YSyncMessageType.SYNC_UPDATE)

log = logging.getLogger(__name__)


def changes_document(message: bytes) -> bool:
    """True for a y-websocket message that carries document updates."""
    return len(message) >= 2 and message[0] == YMessageType.SYNC and message[1] in DOCUMENT_CHANGES


async def room_principal(handler: Any) -> Principal | None:
    """The sender's principal in the server's tenant, or None when it cannot be known (the store
    is not reachable): then nothing that changes the document is let through."""
    runtime = handler.settings.get("floworch")
    if runtime is None:
        return None
    try:
        await runtime.service()
    except Exception:  # noqa: BLE001 - fail closed: the document stays as it is
        return None
    claims = getattr(handler, CLAIMS, None)
    user, via = (claims["sub"], "token") if claims else (user_name(handler.current_user), "jupyter")
    return runtime.roles.principal(user, runtime.settings.tenant, via)


def install() -> None:
    """Wrap jupyter-collaboration's room socket (once per process)."""
    from jupyter_server_ydoc.handlers import YDocWebSocketHandler

    if getattr(YDocWebSocketHandler, "_floworch_guarded", False):
        return
    original = YDocWebSocketHandler.on_message

    async def on_message(self, message):
        if getattr(self, "_room_id", "").startswith(FLOW_ROOM_PREFIX) and isinstance(message, bytes):
            principal = await room_principal(self)
            if principal is not None and principal.role is None:
                log.warning(
                    "%s is not a member of tenant %s: disconnected from %s",
                    principal.user,
                    principal.tenant,
                    self._room_id,
                )
                self.close(NOT_A_MEMBER, f"not a member of tenant '{principal.tenant}'")
                return None
            if changes_document(message):
                if principal is None or not principal.allows("edit"):
                    who = principal.user if principal else "a user whose role is unknown"
                    log.info(
                        "dropped a document update from %s (%s) in %s",
                        who,
                        principal.role if principal else "no store",
                        self._room_id,
                    )
                    return None
                document = getattr(self.room, "_document", None)
                if document is not None:
                    self.settings["floworch"].room_edits.record(self._room_id, principal.user, document)
        return await original(self, message)

    YDocWebSocketHandler.on_message = on_message
    YDocWebSocketHandler._floworch_guarded = True
