"""Optional bearer-token authentication of the engine's WebSocket listeners (protocol.md §1.5).

When a token is configured (``iii-typed engine --token T``, ``[engine] auth_token = "T"`` in
``engine.toml``, or the environment variable :data:`TOKEN_ENV`), every WebSocket upgrade — the
worker protocol on ``/``, telemetry on ``/otel``, channel sockets ``/ws/channels/…`` and the stream
listener — must carry ``Authorization: Bearer T``. Anything else is answered **HTTP 401** before
the upgrade (with ``WWW-Authenticate: Bearer``), so no socket is ever opened; the iii-typed SDK
treats that as fatal (state ``failed``, ``RegistrationRejectedError`` code ``AUTH_ERROR``, no
retry; decisions "Policies"). The SDK sends the header itself when ``III_TOKEN`` is set
(protocol.md §1.5). Without a token every upgrade is accepted, as in the real engine without an
auth function.

The comparison is constant-time. The token is never logged; a refusal logs the peer address and
the reason (missing or wrong token) at WARNING.

A built-in that serves a listener of its own calls :func:`refuse_unauthorized` from its
``process_request`` hook::

    async def process_request(connection, request):
        return refuse_unauthorized(self.services.config, connection, request)
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Final

from websockets.datastructures import Headers

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response

    from .config import EngineConfig

__all__ = ["TOKEN_ENV", "check_authorization", "refuse_unauthorized"]

log = logging.getLogger("iii_typed.engine")

#: Environment variable the engine reads its token from (the SDK's is ``III_TOKEN``).
TOKEN_ENV: Final = "III_ENGINE_TOKEN"

_SCHEME: Final = "bearer"


def check_authorization(token: str | None, headers: Headers) -> str | None:
    """Check the ``Authorization`` header of an upgrade request against ``token``.

    Args:
        token: The configured token, or ``None`` (authentication off).
        headers: The request headers.

    Returns:
        ``None`` when the request may proceed, else the reason it may not (``"missing bearer
        token"``, ``"invalid bearer token"``).
    """
    if token is None:
        return None
    values = headers.get_all("Authorization")
    if not values:
        return "missing bearer token"
    scheme, _, presented = values[0].strip().partition(" ")
    if scheme.lower() != _SCHEME or len(values) != 1:
        return "missing bearer token"
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return "invalid bearer token"
    return None


def refuse_unauthorized(
    config: EngineConfig, connection: ServerConnection, request: Request
) -> Response | None:
    """The 401 answer for an upgrade without the configured bearer token, else ``None``.

    Args:
        config: The engine configuration (its ``auth_token``).
        connection: The connection being upgraded (``process_request`` argument).
        request: The upgrade request.

    Returns:
        ``None`` to let the upgrade proceed, or an HTTP 401 response with
        ``WWW-Authenticate: Bearer`` and a one-line text body naming the reason.
    """
    reason = check_authorization(config.auth_token, request.headers)
    if reason is None:
        return None
    peer = connection.remote_address
    log.warning(
        "refused a WebSocket upgrade to %s from %s: %s",
        request.path.partition("?")[0],
        peer[0] if peer else "?",
        reason,
    )
    response = connection.respond(401, f"Unauthorized: {reason}\n")
    response.headers["WWW-Authenticate"] = 'Bearer realm="iii"'
    return response
