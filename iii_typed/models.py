"""Public input and result models of the SDK (the seed's "Types" section, plus 0.25 extras).

These are what user code builds and passes to :class:`~iii_typed.III`; the client turns them into
protocol frames (protocol.md §2). Wherever the documented API accepts ``Model | dict``, the dict is
validated into the model, so a bad field gives a :class:`pydantic.ValidationError` (a
``ValueError``) that names it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "EnqueueResult",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthConfig",
    "HttpAuthHmac",
    "HttpInvocationConfig",
    "HttpMethod",
    "IIIConnectionState",
    "RegisterFunctionFormat",
    "RegisterServiceInput",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
]

#: Connection states reported by ``get_connection_state`` and to listeners (protocol.md §10).
IIIConnectionState: TypeAlias = Literal["disconnected", "connecting", "connected", "reconnecting", "failed"]

#: Upper-case HTTP methods accepted for HTTP-invoked functions (protocol.md §2.1).
HttpMethod: TypeAlias = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

C = TypeVar("C")


def _not_blank(value: str | None, field: str) -> str | None:
    if value is not None and not value.strip():
        raise ValueError(f"{field} is blank: give it a value or omit it")
    return value


class RegisterFunctionFormat(BaseModel):
    """Legacy format description of a parameter (protocol.md §9); not JSON Schema.

    Serialised without ``None`` fields, e.g.
    ``{"name": "body", "type": "object", "body": [...], "required": false}``.
    """

    name: str
    """Parameter name."""
    type: str
    """``string``, ``number``, ``boolean``, ``object``, ``array``, ``null`` or ``map``."""
    description: str | None = None
    """Human-readable description."""
    body: list[RegisterFunctionFormat] | None = None
    """Nested fields of an object."""
    items: RegisterFunctionFormat | None = None
    """Item format of an array."""
    required: bool = False
    """Whether the parameter is required."""


class RegisterServiceInput(BaseModel):
    """A service grouping sent as ``registerservice`` (protocol.md §2.14)."""

    id: str
    """Service id, e.g. ``payments`` or ``payments::refunds``."""
    name: str | None = None
    """Display name (the engine uses the id when empty)."""
    description: str | None = None
    """Description."""
    parent_service_id: str | None = None
    """Id of the parent service, forming a tree."""

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("service id is blank")
        return value


class RegisterTriggerInput(BaseModel):
    """Bind a function to a trigger type (``registertrigger``, protocol.md §2.5)."""

    type: str
    """Trigger type id, e.g. ``http``, ``cron``, ``state``, ``subscribe`` or a custom type."""
    function_id: str
    """The function the trigger invokes."""
    config: Any = None
    """Trigger-type-specific configuration (a dict, or a pydantic model dumped in JSON mode);
    ``None`` is sent as ``{}``."""
    metadata: Any = None
    """Delivered to the handler as the metadata sidecar on each fire."""
    namespace: str | None = None
    """Namespace the target function resolves in (default: the worker's namespace)."""
    trigger_namespace: str | None = None
    """Namespace of the trigger type's provider (default: the engine's rule)."""

    @field_validator("type", "function_id")
    @classmethod
    def _id_not_blank(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError(f"{info.field_name} is blank")
        return value

    @field_validator("namespace", "trigger_namespace")
    @classmethod
    def _ns_not_blank(cls, value: str | None) -> str | None:
        return _not_blank(value, "namespace")


class RegisterTriggerTypeInput(BaseModel):
    """Provide a custom trigger type (``registertriggertype``, protocol.md §2.3)."""

    id: str
    """Trigger type id, e.g. ``webhook``."""
    description: str = ""
    """Human-readable description (always sent; the engine requires the field)."""
    trigger_request_format: Any = None
    """Schema of a binding's ``config``: a dict, or a pydantic model class (its JSON Schema)."""
    call_request_format: Any = None
    """Schema of the payload handlers receive: a dict or a pydantic model class."""
    namespace: str | None = None
    """Provider namespace (default: the connection's namespace)."""

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("trigger type id is blank")
        return value

    @field_validator("namespace")
    @classmethod
    def _ns_not_blank(cls, value: str | None) -> str | None:
        return _not_blank(value, "namespace")


class TriggerActionEnqueue(BaseModel):
    """Route the invocation through the named queue; ``trigger`` returns an :class:`EnqueueResult`."""

    type: Literal["enqueue"] = "enqueue"
    """Always ``enqueue``."""
    queue: str
    """Name of the target queue."""


class TriggerActionVoid(BaseModel):
    """Fire and forget: ``trigger`` returns ``None`` at once and no result is sent back."""

    type: Literal["void"] = "void"
    """Always ``void``."""


class TriggerAction:
    """Factories for the routing actions of :class:`TriggerRequest` (protocol.md §4.1)."""

    @staticmethod
    def Void() -> TriggerActionVoid:
        """Fire-and-forget routing."""
        return TriggerActionVoid()

    @staticmethod
    def Enqueue(*, queue: str) -> TriggerActionEnqueue:
        """Routing through the named queue."""
        return TriggerActionEnqueue(queue=queue)


class TriggerRequest(BaseModel):
    """A request for :meth:`~iii_typed.III.trigger` (protocol.md §2.8, §4)."""

    function_id: str
    """Function to invoke."""
    payload: Any = None
    """The data passed to the function: any JSON value or pydantic model (JSON mode)."""
    action: Annotated[TriggerActionEnqueue | TriggerActionVoid, Field(discriminator="type")] | None = None
    """``None`` waits for the result; ``TriggerAction.Void()`` or ``TriggerAction.Enqueue(queue=…)``."""
    timeout_ms: int | None = Field(default=None, gt=0)
    """Timeout of this call in ms (default ``InitOptions.invocation_timeout_ms``)."""
    metadata: Any = None
    """Per-invocation sidecar delivered to handlers that take a ``metadata`` parameter."""
    namespace: str | None = None
    """Target namespace; default per protocol.md §3.4."""

    @field_validator("function_id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("function_id is blank")
        return value

    @field_validator("namespace")
    @classmethod
    def _ns_not_blank(cls, value: str | None) -> str | None:
        return _not_blank(value, "namespace")


class EnqueueResult(BaseModel):
    """What ``trigger`` returns for ``TriggerAction.Enqueue``: the receipt of the queued message."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    message_receipt_id: str = Field(alias="messageReceiptId")
    """Id of the queued message (wire name ``messageReceiptId``)."""


class HttpAuthHmac(BaseModel):
    """HMAC-SHA256 request signing; ``secret_key`` names an environment variable on the engine host."""

    type: Literal["hmac"] = "hmac"
    secret_key: str
    """Environment variable holding the secret (not the secret itself)."""


class HttpAuthBearer(BaseModel):
    """``Authorization: Bearer <token>``; ``token_key`` names an environment variable on the engine host."""

    type: Literal["bearer"] = "bearer"
    token_key: str
    """Environment variable holding the token."""


class HttpAuthApiKey(BaseModel):
    """An API key sent in ``header``; ``value_key`` names an environment variable on the engine host."""

    type: Literal["api_key"] = "api_key"
    header: str
    """Header name, e.g. ``X-Api-Key``."""
    value_key: str
    """Environment variable holding the key."""


#: Authentication of an HTTP-invoked function, discriminated by ``type``.
HttpAuthConfig: TypeAlias = Annotated[
    HttpAuthHmac | HttpAuthBearer | HttpAuthApiKey, Field(discriminator="type")
]


class HttpInvocationConfig(BaseModel):
    """Register a function that the engine invokes over HTTP (protocol.md §2.1, §6.7).

    Pass it to ``register_function`` instead of a handler. Calls through this worker's own
    connection are answered with ``function_not_invokable``.
    """

    url: str
    """Target URL."""
    method: HttpMethod = "POST"
    """Upper-case HTTP method."""
    timeout_ms: int | None = Field(default=None, ge=0)
    """Request timeout in ms (engine default 30 000)."""
    headers: dict[str, str] | None = None
    """Extra request headers."""
    auth: HttpAuthConfig | None = None
    """Bearer, HMAC or API-key authentication."""


@dataclass(frozen=True)
class TriggerConfig(Generic[C]):
    """One binding handed to a :class:`TriggerHandler` (e→w ``registertrigger``, protocol.md §2.5).

    Attributes:
        id: Trigger id (stable across reconnects).
        function_id: Function to invoke when the trigger fires.
        config: The binding's configuration; validated into the handler's pydantic model when the
            handler class is declared as ``TriggerHandler[Model]``, else the raw JSON value.
        metadata: Binding metadata, to pass on as the sidecar of each fire.
        namespace: Namespace of the target function when it is not ``default``.
    """

    id: str
    function_id: str
    config: C
    metadata: Any = None
    namespace: str | None = None


class TriggerHandler(ABC, Generic[C]):
    """Provider side of a custom trigger type (see ``III.register_trigger_type``).

    The engine asks the provider to activate and deactivate bindings; the SDK calls these methods
    on its event loop and answers the engine with ``triggerregistrationresult`` (an exception
    becomes ``trigger_registration_failed`` with the exception's message). Declare the class as
    ``TriggerHandler[MyConfig]`` with a pydantic model to receive validated configs.
    """

    @abstractmethod
    async def register_trigger(self, config: TriggerConfig[C]) -> None:
        """Activate a binding. Raise to refuse it."""

    @abstractmethod
    async def unregister_trigger(self, config: TriggerConfig[C]) -> None:
        """Deactivate a binding."""
