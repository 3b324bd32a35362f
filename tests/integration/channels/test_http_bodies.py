"""HTTP request and response bodies through channels with our SDK's typed helpers (protocol.md
§6.6, golden frames C02/C03/E07/H01; cases.md B10): a 20 MiB upload read through
``request_body``, a streamed response with ``set_status`` 201 and custom headers, server-sent
events read incrementally by an HTTP client, and a buffered ``HttpResponse``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from iii_typed import III, ChannelReader, ChannelWriter
from iii_typed.engine.process import EngineProcess
from iii_typed.http_response import HttpRequest, HttpResponse, StreamingResponse, _check_headers, sse_event
from tests.integration.channels.channel_support import client, unique, wait_route
from tests.support.waiting import FACTOR, wait_for_async

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")


def upload_digest(req: HttpRequest) -> HttpResponse:
    """A sync typed handler: hash the raw body chunk by chunk."""
    assert isinstance(req.request_body, ChannelReader) and isinstance(req.response, ChannelWriter)
    digest = hashlib.sha256()
    size = 0
    for chunk in req.request_body:
        digest.update(chunk)
        size += len(chunk)
    return HttpResponse(status_code=201, headers={"X-Size": str(size)}, body={"sha256": digest.hexdigest()})


async def export_rows(req: HttpRequest) -> None:
    """An async typed handler streaming its response."""
    async with req.streaming_response() as out:
        with pytest.raises(ValueError, match="between 200 and 599"):
            await out.set_status_async(700)
        with pytest.raises(ValueError, match="line break"):
            await out.set_headers_async({"X-Bad": "a\r\nInjected: yes"})
        await out.set_status_async(201)
        await out.set_headers_async({"Content-Type": "text/csv", "X-Export": "orders", "X-Multi": ["a", "b"]})
        for index in range(5):
            await out.write_async(f"row{index},{index * index}\n")
        with pytest.raises(RuntimeError, match="before the first body chunk"):
            await out.set_status_async(500)


@pytest.fixture
def worker(engine: EngineProcess) -> Iterator[III]:
    with client(engine.url) as iii:
        yield iii


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def _route(iii: III, handler: Callable[..., Any], method: str) -> str:
    function_id = unique("http::ours")
    path = "/" + unique("route")
    iii.register_function(function_id, handler)
    iii.register_trigger(
        {"type": "http", "function_id": function_id, "config": {"api_path": path, "http_method": method}}
    )
    await wait_route(iii, function_id)
    return path


async def _no_http_channels(iii: III) -> None:
    async def none_left() -> bool:
        listed = await iii.trigger_async({"function_id": "engine::channels::list", "payload": {}})
        return not [row for row in listed["channels"] if row["owner"] == "iii-http"]

    await wait_for_async(none_left, what="the http built-in holds no channel")


@pytest.mark.timeout(90)
async def test_20_mib_upload_is_read_through_the_request_channel(
    engine: EngineProcess, worker: III, session: aiohttp.ClientSession
) -> None:
    path = await _route(worker, upload_digest, "POST")
    blob = os.urandom(20 * 1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        view = memoryview(blob)
        for start in range(0, len(blob), 1 << 20):  # the client streams it too (chunked)
            yield bytes(view[start : start + (1 << 20)])

    timeout = aiohttp.ClientTimeout(total=60 * FACTOR)
    async with session.post(
        engine.http_url + path,
        data=body(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=timeout,
    ) as response:
        assert response.status == 201, await response.text()
        assert response.headers["X-Size"] == str(len(blob))
        assert await response.json() == {"sha256": hashlib.sha256(blob).hexdigest()}
    await _no_http_channels(worker)


async def test_streamed_response_with_set_status_201_and_headers(
    engine: EngineProcess, worker: III, session: aiohttp.ClientSession
) -> None:
    path = await _route(worker, export_rows, "GET")
    async with session.get(
        engine.http_url + path, timeout=aiohttp.ClientTimeout(total=10 * FACTOR)
    ) as response:
        assert response.status == 201
        assert response.headers["Content-Type"] == "text/csv"
        assert response.headers["X-Export"] == "orders"
        assert response.headers.getall("X-Multi") == ["a", "b"]
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert await response.read() == b"".join(f"row{i},{i * i}\n".encode() for i in range(5))
    await _no_http_channels(worker)


async def test_server_sent_events_reach_the_client_one_by_one(
    engine: EngineProcess, worker: III, session: aiohttp.ClientSession
) -> None:
    received = [threading.Event() for _ in range(3)]

    def ticks(req: HttpRequest) -> None:  # a sync handler on its own thread
        with req.streaming_response() as out:
            out.start_events(headers={"X-Stream": "ticks"})
            for index in range(3):
                out.send_event({"n": index}, event="tick", id=str(index))
                # The next event is written only after the client has read this one: a response
                # buffered until the handler returns would never get there.
                if not received[index].wait(10 * FACTOR):
                    out.send_event("the client did not see the event in time", event="error")
                    return

    path = await _route(worker, ticks, "GET")
    async with session.get(
        engine.http_url + path, timeout=aiohttp.ClientTimeout(total=30 * FACTOR)
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Stream"] == "ticks"
        for index in range(3):
            event = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5 * FACTOR)
            assert event == f'event: tick\nid: {index}\ndata: {{"n":{index}}}\n\n'.encode()
            received[index].set()
        assert await response.content.read() == b""
    await _no_http_channels(worker)


async def test_buffered_response_and_raw_body_for_every_content_type(
    engine: EngineProcess, worker: III, session: aiohttp.ClientSession
) -> None:
    async def echo(req: HttpRequest) -> HttpResponse:
        assert req.request_body is not None
        raw = await req.request_body.read_all_async()
        return HttpResponse(
            headers={"Content-Type": "text/plain"},
            body=f"{req.method} {len(raw)} {req.body!r} {req.query_params}",
        )

    path = await _route(worker, echo, "POST")
    url = engine.http_url + path
    cases = [
        ({"data": b'{"a":1}', "headers": {"Content-Type": "application/json"}}, "POST 7 {'a': 1} {}"),
        ({"data": b"hello", "headers": {"Content-Type": "text/plain"}}, "POST 5 None {}"),
        ({"params": {"q": "1"}}, "POST 0 None {'q': '1'}"),
    ]
    for kwargs, expected in cases:
        async with session.post(url, timeout=aiohttp.ClientTimeout(total=5 * FACTOR), **kwargs) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            assert await response.text() == expected
    await _no_http_channels(worker)


def test_streamed_headers_are_checked_like_the_engine_checks_them() -> None:
    """A NUL or another control character in a value, or a name that is not an HTTP token, passed
    the SDK's check; the engine ignores such a set_headers, so the headers silently went missing."""
    for bad, fragment in (
        ({"X-A": "a\x00b"}, "control character"),
        ({"X-A": ["ok", "a\x1bb"]}, "control character"),
        ({"X(A)": "v"}, "invalid header name"),
        ({"X\x7fA": "v"}, "invalid header name"),
    ):
        with pytest.raises(ValueError, match=fragment):
            _check_headers(bad)
    assert _check_headers({"X-Tab": "a\tb", "X-Multi": ["a", "b"]}) == {
        "X-Tab": "a\tb",
        "X-Multi": ["a", "b"],
    }


def test_sse_event_format_and_bad_input() -> None:
    assert (
        sse_event("a\nb", event="e", id="7", retry=100)
        == b"event: e\nid: 7\nretry: 100\ndata: a\ndata: b\n\n"
    )
    assert sse_event({"k": [1, 2]}) == b'data: {"k":[1,2]}\n\n'
    with pytest.raises(ValueError, match="line break"):
        sse_event("x", event="a\nb")
    with pytest.raises(TypeError):
        StreamingResponse("not a writer")
    assert HttpResponse(status_code=201, body={"id": "1"}).model_dump() == {
        "status_code": 201,
        "headers": {},
        "body": {"id": "1"},
    }
