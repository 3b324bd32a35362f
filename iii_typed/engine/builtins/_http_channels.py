"""The seam between the ``http`` built-in and the engine's channels (protocol.md §5, §6.6).

Each routed request gets two channels: ``request_body`` (the engine writes the raw request body,
the handler reads it) and ``response`` (the handler writes ``set_status`` / ``set_headers`` text
frames and binary body chunks, the engine reads them). The ``http`` built-in needs only the small
in-process API below; :func:`locate` finds it on the running channels built-in. When no channels
built-in runs, requests carry no channel refs: handlers answer with a buffered result (option A)
only. (The channels built-in is mandatory in this engine, so that is the case only for engines
embedded with a custom list of built-ins.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

__all__ = ["EngineChannel", "EngineChannelFactory", "locate"]

log = logging.getLogger("iii_typed.engine.http")


@runtime_checkable
class EngineChannel(Protocol):
    """One channel as the engine side sees it.

    ``reader_ref`` / ``writer_ref`` are the wire refs ``{"access_key", "channel_id",
    "direction"}`` handed to workers. The engine uses one side in-process: :meth:`send` and
    :meth:`end` write (with backpressure: ``send`` waits while the buffer is full), iterating
    reads items (``bytes`` for binary frames, ``str`` for text frames) until the writer ends.
    :meth:`discard` removes the channel and closes any socket attached to it.
    """

    @property
    def reader_ref(self) -> dict[str, Any]: ...

    @property
    def writer_ref(self) -> dict[str, Any]: ...

    async def send(self, item: bytes | str) -> None: ...

    async def end(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[bytes | str]: ...

    def discard(self) -> None: ...


@runtime_checkable
class EngineChannelFactory(Protocol):
    """Creates engine-side channels (``engine::channels::create`` without the wire).

    ``owner`` names the built-in that creates the channel (shown by ``engine::channels::list``).
    Implemented by :class:`iii_typed.engine.builtins.channels.ChannelsWorker`.
    """

    def create_channel(
        self, buffer_size: int | None = None, *, owner: str | None = None
    ) -> EngineChannel: ...


def locate(services: Any) -> EngineChannelFactory | None:
    """The running channels built-in, if it offers :class:`EngineChannelFactory`.

    Args:
        services: The engine services (the router keeps the running built-ins).

    Returns:
        The factory, or ``None`` when channels do not run.
    """
    for worker in getattr(services, "builtin_workers", ()):
        if getattr(worker, "section", None) == "channels" and isinstance(worker, EngineChannelFactory):
            return worker
    return None
