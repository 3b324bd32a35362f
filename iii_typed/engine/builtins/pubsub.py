"""``iii-pubsub``: fire-and-forget publish/subscribe (protocol.md §6.4).

* Function ``publish {topic, data}`` (bare id, namespace ``default``) → no result; an empty topic
  answers ``topic_not_set``. Every ``subscribe`` binding of that topic gets ``data`` verbatim,
  each in a task of its own (the call does not wait for the subscribers; their errors are logged),
  with the ``publish`` call's ``traceparent``/``baggage``, so each subscriber's span joins the
  publisher's trace (§4.5).
* Trigger type ``subscribe``: config ``{topic}``; an empty topic is accepted but never fires. Like
  the real engine's local adapter, no metadata sidecar is delivered and ``condition_function_id``
  is accepted but not evaluated (§4.4, §6.4). Unknown fields or wrong types are refused with
  ``trigger_registration_failed``.

Nothing is persisted: a message published while a topic has no subscriber is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from pydantic import BaseModel, Field

from ...errors import InvocationError
from ._settings import check_section, check_trigger_config
from .base import (
    BuiltinError,
    BuiltinFunction,
    BuiltinTriggerType,
    BuiltinWorker,
    CallContext,
    EngineServices,
    TriggerBinding,
    TriggerRegistrationError,
)

__all__ = ["BUILTIN", "PubSubWorker", "PublishInput", "SubscribeConfig"]

log = logging.getLogger("iii_typed.engine.pubsub")

SUBSCRIBE_TRIGGER: Final = "subscribe"
_TRIGGER_FIELDS: Final = {"topic": str, "condition_function_id": str}


class PublishInput(BaseModel):
    """``publish`` input."""

    topic: str = Field(description="Topic to publish to (non-empty).")
    data: Any = Field(description="Delivered verbatim to every subscriber.")


class SubscribeConfig(BaseModel):
    """Config of a ``subscribe`` binding."""

    topic: str = Field(description="Topic to receive (an empty topic never fires).")
    condition_function_id: str | None = Field(default=None, description="Accepted, not evaluated.")


class PubSubWorker(BuiltinWorker):
    """The ``iii-pubsub`` built-in (see the module docstring)."""

    name: ClassVar[str] = "iii-pubsub"
    section: ClassVar[str] = "pubsub"
    description: ClassVar[str] = "Fire-and-forget publish/subscribe"
    order: ClassVar[int] = 40

    def __init__(self, services: EngineServices) -> None:
        super().__init__(services)
        check_section(self.section, services.section(self.section), {})

    def functions(self) -> Sequence[BuiltinFunction]:
        """``publish``."""
        return (
            BuiltinFunction(
                "publish",
                self._publish,
                "Publish data to every subscriber of a topic",
                input_model=PublishInput,
            ),
        )

    def trigger_types(self) -> Sequence[BuiltinTriggerType]:
        """``subscribe``."""
        return (
            BuiltinTriggerType(
                SUBSCRIBE_TRIGGER,
                "Receives the data published to a topic",
                register=self._register,
                trigger_request_format=SubscribeConfig.model_json_schema(),
            ),
        )

    async def _register(self, binding: TriggerBinding) -> None:
        config = check_trigger_config(SUBSCRIBE_TRIGGER, binding.config, _TRIGGER_FIELDS)
        if "topic" not in config:
            raise TriggerRegistrationError("subscribe trigger config needs a 'topic' (a string)")
        if config.get("condition_function_id"):
            log.info(
                "subscribe trigger %s: condition_function_id is not evaluated (as in the real engine)",
                binding.id,
            )

    async def _publish(self, data: PublishInput, ctx: CallContext) -> Any:
        if data.topic == "":
            raise BuiltinError("topic_not_set", "publish needs a non-empty topic")
        for binding in self.services.bindings(SUBSCRIBE_TRIGGER):
            config = binding.config
            if isinstance(config, dict) and config.get("topic") == data.topic:
                self.services.spawn(
                    self._deliver(binding, data.data, ctx.traceparent, ctx.baggage), name="pubsub-deliver"
                )
        return None

    async def _deliver(
        self, binding: TriggerBinding, data: Any, traceparent: str | None, baggage: str | None
    ) -> None:
        try:
            await self.services.invoke(
                binding.function_id,
                data,
                namespace=binding.namespace,
                traceparent=traceparent,
                baggage=baggage,
            )
        except InvocationError as exc:
            log.warning(
                "subscriber %s of topic %r failed: %s: %s",
                binding.function_id,
                binding.config.get("topic") if isinstance(binding.config, dict) else None,
                exc.code,
                exc.message,
            )


BUILTIN = PubSubWorker
