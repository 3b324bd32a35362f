"""The aiohttp server of the ``http`` built-in, hardened against malformed and slow clients.

aiohttp's low-level :class:`aiohttp.web.Server` creates one :class:`aiohttp.web.RequestHandler`
(an asyncio protocol) per connection. :class:`HttpServer` makes it create :class:`HttpProtocol`,
which keeps aiohttp's parser and request loop and changes four things:

* **Header read timeout.** aiohttp has none: its keep-alive timer only runs between requests.
  A request head (request line and headers) must be complete ``header_read_timeout`` seconds
  after the connection opens (first request) or after its first byte arrives (next requests on a
  keep-alive connection); otherwise the connection is closed — after a ``408 Request Timeout``
  when part of a head had arrived, silently when nothing had. Idle keep-alive connections are
  left to aiohttp's ``keepalive_timeout``.
* **Malformed requests** (a bad request line, header, ``Content-Length`` or chunked framing, a
  head over aiohttp's size limits, an HTTP version other than 1.0 and 1.1 — aiohttp's C parser
  would serve ``HTTP/0.9``, a request line without a version, and ``HTTP/2.0``) are answered
  ``400`` ``text/plain`` with the parser's reason, the connection is closed, and one INFO line
  is logged (aiohttp logs a traceback at ERROR on ``aiohttp.server``).
* **Broken request bodies.** When the C parser meets bad chunked framing after a request's head
  was handed to the handler, aiohttp queues a 400 but never ends that request's body, so the
  handler would wait on it until its deadline. The body now fails with
  :class:`aiohttp.web.RequestPayloadError`, as aiohttp's pure-Python parser already does.
* Errors a client causes that surface while aiohttp drains an unread body (after the response)
  are logged at DEBUG without a traceback; any other unexpected error keeps aiohttp's ERROR log
  with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from aiohttp import web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import _ErrInfo

__all__ = ["CLIENT_ERRORS", "HttpProtocol", "HttpServer", "describe_client_error"]

log = logging.getLogger("iii_typed.engine.http")

#: Exceptions caused by the client rather than by the engine: malformed HTTP (aiohttp's parser
#: errors), a request body that cannot be read to its end, a connection that went away.
CLIENT_ERRORS: Final = (HttpProcessingError, web.RequestPayloadError, ConnectionError)

#: While a response is still being produced, an expired header timer looks again this often (s).
_RECHECK_SECONDS: Final = 0.05
#: Sent to a client whose request head was incomplete when the header read timeout passed.
_REQUEST_TIMEOUT: Final = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
#: The HTTP versions served; a request with any other is a malformed request (400).
_VERSIONS: Final = frozenset({(1, 0), (1, 1)})


def describe_client_error(exc: BaseException | None, message: str | None = None) -> str:
    """One line (at most 200 characters) saying what was wrong with a client's request.

    Args:
        exc: The exception aiohttp raised, if any.
        message: aiohttp's message for it, if any (preferred: it has no status code prefix).
    """
    text = message
    if not text and isinstance(exc, HttpProcessingError):
        text = exc.message
    if not text and exc is not None:
        text = str(exc) or type(exc).__name__
    # aiohttp's parser messages are multi-line, with a ``^`` under the offending byte.
    lines = [line.strip() for line in (text or "Bad Request").splitlines() if line.strip(" \t^")]
    return " ".join(lines)[:200]


def _remote(peername: Any) -> str:
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return str(peername) if peername else "unknown"


class HttpProtocol(web.RequestHandler):
    """aiohttp's per-connection request handler with a header read timeout and quiet client errors.

    Args:
        manager: The :class:`HttpServer` that created it.
        header_read_timeout: Seconds a client has to complete a request head (> 0).
        **kwargs: aiohttp's :class:`~aiohttp.web.RequestHandler` options (``loop``,
            ``keepalive_timeout``, ``access_log``, ``max_line_size``…).
    """

    def __init__(self, manager: web.Server, *, header_read_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_read_timeout = header_read_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes received since the header timer started
        self._body: StreamReader | None = None  # the last request's body, to fail on bad framing

    # -- the header read timeout -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start serving the connection; its first request head must arrive in time."""
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Forget the connection (aiohttp ends the request in flight)."""
        self._stop_header_timer()
        self._body = None
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._head_bytes = 0
        self._header_timer = self._loop.call_later(self._header_read_timeout, self._header_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport is None or self._force_close or self._close:
            return
        if self._waiter is None:
            # The previous response is still being produced (the next head arrived early):
            # never write into it; close once aiohttp waits for the next head.
            self._header_timer = self._loop.call_later(_RECHECK_SECONDS, self._header_timed_out)
            return
        timeout_ms = round(self._header_read_timeout * 1000)
        remote = _remote(self.peername)
        if self._head_bytes:
            log.info(
                "http: closed a connection from %s: request head incomplete after %d ms (%d bytes)",
                remote,
                timeout_ms,
                self._head_bytes,
            )
            # No response is in progress: aiohttp is waiting for this head.
            transport.write(_REQUEST_TIMEOUT)
        else:
            log.debug("http: closed a connection from %s: no request within %d ms", remote, timeout_ms)
        self.force_close()

    def data_received(self, data: bytes) -> None:
        """Parse ``data`` (aiohttp), then run the header timer and fail a broken request body."""
        before = len(self._messages)
        super().data_received(data)
        after = len(self._messages)
        if after > before:
            # One or more heads completed (or a parse error was queued as a 400).
            self._refuse_versions(before, after)
            self._stop_header_timer()
            message, payload = self._messages[-1]
            if isinstance(message, RawRequestMessage):
                self._body = payload
            else:  # aiohttp's parse error record: a 400 to send
                self._fail_body(message)
        elif data and self._header_timer is None and not self._upgraded and self._between_requests():
            # The first bytes of the next request head on a keep-alive connection.
            self._start_header_timer()
        if self._header_timer is not None:
            self._head_bytes += len(data)

    def _refuse_versions(self, start: int, stop: int) -> None:
        """Turn the queued requests ``start:stop`` with an unserved HTTP version into 400s.

        aiohttp's error path then answers it like any malformed request and closes the
        connection, so the requests queued after it are never served.
        """
        for index in range(start, stop):
            message = self._messages[index][0]
            if isinstance(message, RawRequestMessage) and tuple(message.version) not in _VERSIONS:
                major, minor = message.version
                exc = BadHttpMessage(f"Unsupported HTTP version: {major}.{minor}")
                self._messages[index] = (_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD)

    def _between_requests(self) -> bool:
        """Whether bytes arriving now start a new request head (the last body was read whole)."""
        body = self._body
        return body is None or body.is_eof()

    def _fail_body(self, error: Any) -> None:
        """A parse error was queued while a request's body may still be arriving: end that body."""
        body, self._body = self._body, None
        if body is None or body.is_eof() or body.exception() is not None:
            return
        exc = getattr(error, "exc", None)
        reason = describe_client_error(exc, getattr(error, "message", None))
        body.set_exception(web.RequestPayloadError(reason))

    # -- client errors -------------------------------------------------------------------------
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The response to a request aiohttp could not parse: 4xx in one log line, else aiohttp's.

        Raises:
            ConnectionError: part of a response was already sent (aiohttp's rule).
        """
        if not 400 <= status < 500:
            return super().handle_error(request, status, exc, message)
        reason = describe_client_error(exc, message)
        log.info("http: bad request from %s: %d %s", request.remote or "unknown", status, reason)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already started: cannot send the 400")
        response = web.Response(status=status, text=f"{reason}\n", content_type="text/plain")
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's ERROR log, except for client-caused errors: one DEBUG line, no traceback."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, CLIENT_ERRORS):
            remote = _remote(self.peername)
            log.debug("http: connection from %s closed: %s", remote, describe_client_error(exc))
            return
        super().log_exception(*args, **kwargs)


class HttpServer(web.Server):
    """:class:`aiohttp.web.Server` whose connections are served by :class:`HttpProtocol`.

    Args:
        handler: ``async (request) -> response``.
        header_read_timeout: Seconds a client has to complete a request head (> 0).
        **kwargs: :class:`aiohttp.web.Server` options, passed on to each protocol as aiohttp does
            (``keepalive_timeout``, ``access_log``, ``handler_cancellation``…).
    """

    def __init__(self, handler: Any, *, header_read_timeout: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._header_read_timeout = header_read_timeout
        self._protocol_kwargs = {
            key: value
            for key, value in kwargs.items()
            if key not in ("request_factory", "handler_cancellation", "loop")
        }

    def __call__(self) -> HttpProtocol:
        """A protocol for a new connection (asyncio's protocol factory)."""
        return HttpProtocol(
            self,
            loop=asyncio.get_running_loop(),
            header_read_timeout=self._header_read_timeout,
            **self._protocol_kwargs,
        )
