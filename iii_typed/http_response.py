"""Typed helpers for ``http`` trigger handlers: the request, buffered and streamed responses.

protocol.md §6.6. A handler bound to an ``http`` trigger receives the request payload (golden
frame E07) with two channel refs, which the SDK turns into live objects: ``request_body`` (a
:class:`~iii_typed.ChannelReader` over the raw body, whatever its content type) and ``response``
(a :class:`~iii_typed.ChannelWriter`). Declare the handler's parameter as :class:`HttpRequest` to
get them typed::

    from iii_typed.http_response import HttpRequest, HttpResponse, StreamingResponse

    def upload(req: HttpRequest) -> HttpResponse:            # option A: a buffered response
        size = len(req.request_body.read_all())
        return HttpResponse(status_code=201, body={"size": size})

    async def export(req: HttpRequest) -> None:              # option B: a streamed response
        async with StreamingResponse(req.response) as out:
            await out.set_status_async(200)
            await out.set_headers_async({"Content-Type": "text/csv"})
            for row in rows:
                await out.write_async(row)

    async def ticks(req: HttpRequest) -> None:               # server-sent events
        async with StreamingResponse(req.response) as out:
            await out.start_events_async()
            await out.send_event_async({"n": 1}, event="tick")

Option B in detail: ``set_status`` and ``set_headers`` are text frames on the response channel
(golden frames C02, C03) that must come before the first body chunk; the engine starts the HTTP
response at the first binary chunk (or when the channel closes) and sends every later chunk as
it arrives (chunked transfer encoding); closing the channel ends the response. A handler that
returns a non-null result before writing any body chunk answers with that result instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .channels import ChannelReader, ChannelWriter

__all__ = ["HttpRequest", "HttpResponse", "StreamingResponse", "sse_event"]


class HttpRequest(BaseModel):
    """The payload of an ``http`` trigger (protocol.md §6.6, golden frame E07).

    Attributes:
        method: The HTTP method, e.g. ``POST``.
        path: The route's registered ``api_path`` (e.g. ``/users/:id``).
        path_params: ``:param`` segments of the path.
        query_params: Query parameters (the last value of a repeated one).
        headers: Request headers, lower-case names (a repeated header as a list).
        body: The parsed JSON body for JSON content types, else ``None``.
        request_body: The raw body (present when the engine runs channels).
        response: The response channel (present when the engine runs channels).
        trigger: ``{"type": "http", "method", "path"}``.
    """

    model_config = ConfigDict(extra="ignore")

    method: str
    path: str = ""
    path_params: dict[str, str] = Field(default_factory=dict)
    query_params: dict[str, str | list[str]] = Field(default_factory=dict)
    headers: dict[str, str | list[str]] = Field(default_factory=dict)
    body: Any = None
    request_body: ChannelReader | None = None
    response: ChannelWriter | None = None
    trigger: dict[str, Any] | None = None

    def streaming_response(self) -> StreamingResponse:
        """A :class:`StreamingResponse` on this request's ``response`` channel.

        Raises:
            ValueError: the request carries no response channel (the engine runs no channels).
        """
        if self.response is None:
            raise ValueError("this request has no response channel: return an HttpResponse instead")
        return StreamingResponse(self.response)


class HttpResponse(BaseModel):
    """A buffered response (option A), written with the wire's snake_case names (golden H01).

    Attributes:
        status_code: The status (default 200).
        headers: Response headers (``{"Name": "value"}``).
        body: Any JSON value; a string is sent as is when ``headers`` set a ``Content-Type``.
    """

    status_code: int = Field(default=200, ge=200, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None


def _control(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


#: An HTTP header name (RFC 9110 ``token``); the engine refuses any other.
_HEADER_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Controls (other than HTAB) that no header value may hold.
_HEADER_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _check_headers(headers: Mapping[str, str | list[str]]) -> dict[str, str | list[str]]:
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of names to values, not {type(headers).__name__}")
    checked: dict[str, str | list[str]] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_TOKEN.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, str):
                raise TypeError(f"header {name!r} must have str values, not {type(item).__name__}")
            if "\r" in item or "\n" in item:
                raise ValueError(f"header {name!r} contains a line break")
            if match := _HEADER_CONTROLS.search(item):
                raise ValueError(f"header {name!r} contains a control character ({match.group()!r})")
        checked[name] = value
    return checked


def _check_status(status_code: int) -> int:
    if isinstance(status_code, bool) or not isinstance(status_code, int):
        raise TypeError(f"status_code must be an int, not {type(status_code).__name__}")
    if not 200 <= status_code <= 599:  # a 1xx is interim: the client would wait for the answer
        raise ValueError(f"status_code must be between 200 and 599, got {status_code}")
    return status_code


def sse_event(
    data: Any, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One server-sent event: ``event:``/``id:``/``retry:`` lines, ``data:`` lines, a blank line.

    Args:
        data: A string (each line becomes a ``data:`` line) or any JSON value (compact JSON).
        event: The event name.
        id: The event id.
        retry: Reconnection delay for the client, milliseconds.

    Raises:
        ValueError: ``event`` or ``id`` contains a line break.
    """
    lines: list[str] = []
    for field, value in (("event", event), ("id", id)):
        if value is not None:
            if "\n" in value or "\r" in value:
                raise ValueError(f"SSE {field} must not contain a line break")
            lines.append(f"{field}: {value}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    lines.extend(f"data: {line}" for line in text.replace("\r\n", "\n").split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


#: Headers of an event stream.
SSE_HEADERS: dict[str, str | list[str]] = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class StreamingResponse:
    """Write an HTTP response through the ``response`` channel (option B); sync and async forms.

    Args:
        writer: The request's ``response`` channel writer.

    Status and headers must be set before the first body chunk. Use it as a context manager to
    close the channel (end the response) at the end.
    """

    def __init__(self, writer: ChannelWriter) -> None:
        if not isinstance(writer, ChannelWriter):
            raise TypeError(
                f"StreamingResponse needs the request's ChannelWriter, not {type(writer).__name__}"
            )
        self.writer = writer
        self._body_started = False

    def _head(self) -> None:
        if self._body_started:
            raise RuntimeError(
                "the response has started: set the status and headers before the first body chunk"
            )

    # -- status and headers (golden frames C02, C03) ---------------------------------------
    def set_status(self, status_code: int) -> None:
        """Send ``{"type": "set_status", "status_code": n}`` (200-599).

        Raises:
            ValueError / TypeError: not an int in range.
            RuntimeError: the body has started.
            IIIError: the channel failed (see :class:`~iii_typed.ChannelWriter`).
        """
        self._head()
        self.writer.send_message(_control({"type": "set_status", "status_code": _check_status(status_code)}))

    async def set_status_async(self, status_code: int) -> None:
        """Async twin of :meth:`set_status`."""
        self._head()
        await self.writer.send_message_async(
            _control({"type": "set_status", "status_code": _check_status(status_code)})
        )

    def set_headers(self, headers: Mapping[str, str | list[str]]) -> None:
        """Send ``{"type": "set_headers", "headers": {...}}`` (a list value repeats the header).

        Raises:
            ValueError / TypeError: a bad name or value (line breaks are refused).
            RuntimeError: the body has started.
        """
        self._head()
        self.writer.send_message(_control({"type": "set_headers", "headers": _check_headers(headers)}))

    async def set_headers_async(self, headers: Mapping[str, str | list[str]]) -> None:
        """Async twin of :meth:`set_headers`."""
        self._head()
        await self.writer.send_message_async(
            _control({"type": "set_headers", "headers": _check_headers(headers)})
        )

    # -- body ----------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send a body chunk (a ``str`` is UTF-8 encoded); the first one starts the response."""
        self._body_started = True
        self.writer.write(data.encode("utf-8") if isinstance(data, str) else data)

    async def write_async(self, data: bytes | bytearray | memoryview | str) -> None:
        """Async twin of :meth:`write`."""
        self._body_started = True
        await self.writer.write_async(data.encode("utf-8") if isinstance(data, str) else data)

    # -- server-sent events ----------------------------------------------------------------
    def start_events(
        self, status_code: int = 200, headers: Mapping[str, str | list[str]] | None = None
    ) -> None:
        """Set the status and the event-stream headers (``text/event-stream``, ``no-cache``)."""
        self.set_status(status_code)
        self.set_headers({**SSE_HEADERS, **(headers or {})})

    async def start_events_async(
        self, status_code: int = 200, headers: Mapping[str, str | list[str]] | None = None
    ) -> None:
        """Async twin of :meth:`start_events`."""
        await self.set_status_async(status_code)
        await self.set_headers_async({**SSE_HEADERS, **(headers or {})})

    def send_event(
        self, data: Any, *, event: str | None = None, id: str | None = None, retry: int | None = None
    ) -> None:
        """Send one server-sent event (see :func:`sse_event`); it reaches the client at once."""
        self.write(sse_event(data, event=event, id=id, retry=retry))

    async def send_event_async(
        self, data: Any, *, event: str | None = None, id: str | None = None, retry: int | None = None
    ) -> None:
        """Async twin of :meth:`send_event`."""
        await self.write_async(sse_event(data, event=event, id=id, retry=retry))

    # -- end -------------------------------------------------------------------------------
    def close(self) -> None:
        """End the response (closes the channel). Idempotent."""
        self.writer.close()

    async def close_async(self) -> None:
        """Async twin of :meth:`close`."""
        await self.writer.close_async()

    def __enter__(self) -> StreamingResponse:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> StreamingResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close_async()
