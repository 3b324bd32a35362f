"""Client spans around ``urllib`` requests (``OtelConfig.fetch_instrumentation_enabled``, §8.2-§8.3).

:func:`install` wraps ``urllib.request.OpenerDirector.open`` once per process. While a client with
fetch instrumentation on is attached to the hub, each request runs in a CLIENT span named after
its method (``GET``, ``POST``…) with ``http.request.method``, ``url.full``, ``server.address``,
``server.port`` and ``http.response.status_code``; status ERROR for an exception or a status
≥ 400. The request carries ``traceparent`` (and ``baggage``) of that span, so a traced HTTP server
continues the trace. URLs containing one of the ``OTEL_FETCH_IGNORE_URLS`` entries are not traced.
Otherwise the original method runs untouched.
"""

from __future__ import annotations

import threading
import urllib.request
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._hub import ClientTelemetry, current_hub

__all__ = ["install"]

_INSTALLED = False
_LOCK = threading.Lock()


def _enabled_for(url: str) -> bool:
    hub = current_hub()
    if hub is None or hub.sender is None:
        return False
    clients = [c for c in list(hub.clients) if c.config.fetch_instrumentation_enabled]
    if not clients:
        return False
    return not any(part in url for part in clients[0].config.fetch_ignore_urls)


def install() -> None:
    """Wrap ``OpenerDirector.open`` (once; later calls do nothing)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        _INSTALLED = True
        original = urllib.request.OpenerDirector.open

        def traced_open(
            self: urllib.request.OpenerDirector, fullurl: Any, data: Any = None, *args: Any, **kwargs: Any
        ) -> Any:
            url = fullurl.full_url if isinstance(fullurl, urllib.request.Request) else str(fullurl)
            hub = current_hub()
            if hub is None or not _enabled_for(url):
                return original(self, fullurl, data, *args, **kwargs)
            request = fullurl if isinstance(fullurl, urllib.request.Request) else urllib.request.Request(url)
            method = (
                request.get_method()
                if data is None
                else ("POST" if request.method is None else request.method)
            )
            parts = urlsplit(url)
            attributes: dict[str, Any] = {"http.request.method": method, "url.full": url}
            if parts.hostname:
                attributes["server.address"] = parts.hostname
            if parts.port:
                attributes["server.port"] = parts.port
            span = hub.tracer.start_span(method, kind=SpanKind.CLIENT, attributes=attributes)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                traceparent, baggage = ClientTelemetry.outgoing()
                if traceparent is not None:
                    request.add_unredirected_header("traceparent", traceparent)
                if baggage is not None:
                    request.add_unredirected_header("baggage", baggage)
                try:
                    response = original(self, request, data, *args, **kwargs)
                except HTTPError as exc:
                    span.set_attribute("http.response.status_code", exc.code)
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {exc.code}"))
                    raise
                except BaseException as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))
                    raise
                status = getattr(response, "status", None)
                if isinstance(status, int):
                    span.set_attribute("http.response.status_code", status)
                    if status >= 400:
                        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
                return response
            finally:
                otel_context.detach(token)
                span.end()

        urllib.request.OpenerDirector.open = traced_open  # type: ignore[method-assign]
