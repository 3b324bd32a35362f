"""Curated view of the generated protocol models (protocol.md §2).

The models themselves are generated from ``schema/protocol/`` into ``_generated/frames.py``;
this module re-exports them under stable names and adds the few constants the protocol fixes.
Models are pure data: no I/O, no references to connections.
"""

from __future__ import annotations

from typing import Final

from ._generated.frames import (
    ErrorBody,
    ErrorFrame,
    Frame,
    HttpAuth,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    StreamChannelRef,
    TriggerAction,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "MAX_MESSAGE_BYTES",
    "ErrorBody",
    "ErrorFrame",
    "Frame",
    "FrameModel",
    "HttpAuth",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthHmac",
    "HttpInvocationRef",
    "InvocationResult",
    "InvokeFunction",
    "Ping",
    "Pong",
    "Reattach",
    "RegisterFunction",
    "RegisterService",
    "RegisterTrigger",
    "RegisterTriggerType",
    "RegistrationRejected",
    "StreamChannelRef",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerRegistrationResult",
    "UnregisterFunction",
    "UnregisterTrigger",
    "UnregisterTriggerType",
    "WorkerRegistered",
]

#: The namespace used when none is given (protocol.md §3.4).
DEFAULT_NAMESPACE: Final = "default"

#: Largest message either side accepts: 64 MiB (protocol.md §1.3; decisions "Size").
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024

#: Any concrete frame model (the members of :data:`Frame`).
FrameModel = (
    RegisterFunction
    | UnregisterFunction
    | RegisterTriggerType
    | UnregisterTriggerType
    | RegisterTrigger
    | UnregisterTrigger
    | TriggerRegistrationResult
    | RegisterService
    | InvokeFunction
    | InvocationResult
    | WorkerRegistered
    | RegistrationRejected
    | Reattach
    | Ping
    | Pong
    | ErrorFrame
)
