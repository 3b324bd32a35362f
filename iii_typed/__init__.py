"""iii-typed: a typed Python SDK for the iii engine.

Everything public is importable from here (decisions "Public API")::

    from iii_typed import register_worker, InitOptions, TriggerAction, InvocationError

    iii = register_worker("ws://127.0.0.1:49134", InitOptions(worker_name="my-worker"))
    iii.register_function("greet", lambda data: {"message": f"Hello, {data['name']}!"})
"""

from __future__ import annotations

from .channels import Channel, ChannelReader, ChannelWriter
from .client import III, FunctionRef, Trigger, TriggerTypeRef, register_worker
from .context import InvocationContext, current_invocation
from .errors import (
    EngineUnreachableError,
    IIIError,
    InvocationError,
    InvocationTimeoutError,
    RegistrationRejectedError,
    ResponseValidationError,
)
from .logger import Logger
from .models import (
    EnqueueResult,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthConfig,
    HttpAuthHmac,
    HttpInvocationConfig,
    IIIConnectionState,
    RegisterFunctionFormat,
    RegisterServiceInput,
    RegisterTriggerInput,
    RegisterTriggerTypeInput,
    TriggerAction,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerConfig,
    TriggerHandler,
    TriggerRequest,
)
from .options import InitOptions, OtelConfig, ReconnectionConfig, TelemetryOptions
from .streams import IStream

__all__ = [
    "III",
    "Channel",
    "ChannelReader",
    "ChannelWriter",
    "EngineUnreachableError",
    "EnqueueResult",
    "FunctionRef",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthConfig",
    "HttpAuthHmac",
    "HttpInvocationConfig",
    "IIIConnectionState",
    "IIIError",
    "IStream",
    "InitOptions",
    "InvocationContext",
    "InvocationError",
    "InvocationTimeoutError",
    "Logger",
    "OtelConfig",
    "ReconnectionConfig",
    "RegisterFunctionFormat",
    "RegisterServiceInput",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "RegistrationRejectedError",
    "ResponseValidationError",
    "TelemetryOptions",
    "Trigger",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
    "TriggerTypeRef",
    "current_invocation",
    "register_worker",
]
