"""HTTP bodies through channels: the raw request body (cases.md B10, a 20 MiB upload) and streamed
responses (``set_status`` / ``set_headers`` + chunks, server-sent events) — protocol.md §5, §6.6.

Handlers run on the official ``iii`` client (its ``ChannelReader`` / ``ChannelWriter`` speak the
channel sockets) and on our SDK (``iii_typed.http_response``); our SDK also drives the catalog
calls (route readiness, ``engine::channels::list``). A raw WebSocket worker checks the exact
``invokefunction`` frame against golden frame E07.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from http_helpers import fetch, http_channels, unique, wait_bound, wait_routes, write_config
from support.waiting import wait_for_async

from iii_typed import III, InitOptions, register_worker
from iii_typed.engine.process import EngineProcess
from iii_typed.http_response import HttpRequest, HttpResponse, StreamingResponse
from tests.support.official import shutdown_official

os.environ.setdefault("OTEL_ENABLED", "false")
#: The official client deprecates register_trigger in favour of observe(); http still uses it.
pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")
iii = pytest.importorskip("iii")

SET_STATUS_201 = json.dumps({"type": "set_status", "status_code": 201})


@pytest.fixture(scope="module")
def stream_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    tmp = tmp_path_factory.mktemp("http-streaming")
    proc = EngineProcess(log_path=tmp / "engine.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def ours(stream_engine: EngineProcess) -> Iterator[III]:
    client = register_worker(stream_engine.url, InitOptions(worker_name=unique("http-stream-ctl")))
    yield client
    client.shutdown()


@pytest.fixture(scope="module")
def official(stream_engine: EngineProcess) -> Iterator[Any]:
    client = iii.register_worker(
        stream_engine.url, iii.InitOptions(worker_name=unique("http-stream-official"))
    )
    yield client
    shutdown_official(client)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


Route = Callable[..., Any]


@pytest.fixture
def route(ours: III, official: Any) -> Route:
    """``await route(handler, method, api_path)``: an official-client handler behind a live route."""

    async def factory(handler: Callable[..., Any], method: str, api_path: str, client: Any = None) -> str:
        worker = client or official
        function_id = unique("stream::fn")
        worker.register_function(function_id, handler)
        worker.register_trigger(
            {
                "type": "http",
                "function_id": function_id,
                "config": {"api_path": api_path, "http_method": method},
            }
        )
        await wait_bound(ours, function_id)
        return function_id

    return factory


async def no_http_channels_left(ours: III) -> None:
    async def none_left() -> bool:
        return not await http_channels(ours)

    await wait_for_async(none_left, what="the http built-in holds no channel")


# -- the request body (cases.md B10, issue 5) -------------------------------------------------------
async def test_b10_raw_body_for_json_text_and_empty_bodies(stream_engine, ours, route, session):
    async def echo(req: Any) -> Any:
        raw = await req["request_body"].read_all()
        return {"status_code": 200, "body": {"len": len(raw), "parsed": req["body"], "raw": raw.decode()}}

    path = unique("/echo")
    await route(echo, "POST", path)
    url = stream_engine.http_url + path
    cases = [
        (
            {"data": b'{"a":1}', "headers": {"Content-Type": "application/json"}},
            {"len": 7, "parsed": {"a": 1}, "raw": '{"a":1}'},
        ),
        (
            {"data": b"hello", "headers": {"Content-Type": "text/plain"}},
            {"len": 5, "parsed": None, "raw": "hello"},
        ),
        ({}, {"len": 0, "parsed": None, "raw": ""}),
    ]
    for kwargs, expected in cases:
        started = time.monotonic()
        reply = await fetch(session, "POST", url, **kwargs)
        elapsed = time.monotonic() - started
        assert reply.status == 200, reply
        assert reply.json() == expected
        assert elapsed < 1.0, f"{kwargs} took {elapsed:.2f} s"
    await no_http_channels_left(ours)


async def test_upload_of_20_mib_is_read_through_the_request_channel(stream_engine, ours, route, session):
    async def digest(req: Any) -> Any:
        hasher = hashlib.sha256()
        size = 0
        async for chunk in req["request_body"]:
            hasher.update(chunk)
            size += len(chunk)
        return {"body": {"size": size, "sha256": hasher.hexdigest()}}

    path = unique("/upload")
    await route(digest, "PUT", path)
    blob = os.urandom(20 * 1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(blob), 256 * 1024):
            yield blob[start : start + 256 * 1024]

    reply = await fetch(
        session,
        "PUT",
        stream_engine.http_url + path,
        data=chunks(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=aiohttp.ClientTimeout(total=60),
    )
    assert reply.status == 200, reply
    assert reply.json() == {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    await no_http_channels_left(ours)


# -- streamed responses (option B) ---------------------------------------------------------------------
async def test_streamed_response_with_set_status_201_and_custom_headers(stream_engine, ours, route, session):
    async def stream(req: Any) -> Any:
        out = req["response"]
        await out.send_message_async(SET_STATUS_201)
        await out.send_message_async(
            json.dumps({"type": "set_headers", "headers": {"Content-Type": "text/csv", "X-Export": "orders"}})
        )
        for index in range(5):
            await out.write(f"row{index},{index * index}\n".encode())
        await out.close_async()
        return None

    path = unique("/export")
    await route(stream, "GET", path)
    reply = await fetch(session, "GET", stream_engine.http_url + path)
    assert reply.status == 201
    assert reply.headers["Content-Type"] == "text/csv"
    assert reply.headers["X-Export"] == "orders"
    assert reply.headers["Transfer-Encoding"] == "chunked"
    assert reply.body == b"".join(f"row{i},{i * i}\n".encode() for i in range(5))
    await no_http_channels_left(ours)


async def test_server_sent_events_arrive_incrementally(stream_engine, ours, route, session):
    acknowledged = threading.Event()

    async def events(req: Any) -> Any:
        out = req["response"]
        await out.send_message_async(
            json.dumps(
                {
                    "type": "set_headers",
                    "headers": {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                }
            )
        )
        await out.write(b"event: tick\ndata: 1\n\n")
        # The second event is written only once the HTTP client has read the first one, so a
        # response that is buffered until the handler finishes would never show event 1 in time.
        seen = await asyncio.to_thread(acknowledged.wait, 10)
        await out.write(b"event: tick\ndata: 2\n\n" if seen else b"event: tick\ndata: timeout\n\n")
        await out.close_async()
        return None

    path = unique("/events")
    await route(events, "GET", path)
    timeout = aiohttp.ClientTimeout(total=20)
    async with session.get(stream_engine.http_url + path, timeout=timeout) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
        assert first == b"event: tick\ndata: 1\n\n"
        acknowledged.set()
        rest = await asyncio.wait_for(response.content.read(), 5)
    assert rest == b"event: tick\ndata: 2\n\n"
    await no_http_channels_left(ours)


async def test_a_result_before_any_body_chunk_wins_over_the_channel(stream_engine, ours, route, session):
    async def answer(req: Any) -> Any:
        await req["response"].send_message_async(json.dumps({"type": "set_status", "status_code": 500}))
        return {"status_code": 200, "headers": {"Content-Type": "text/plain"}, "body": "option A"}

    path = unique("/option-a")
    await route(answer, "GET", path)
    reply = await fetch(session, "GET", stream_engine.http_url + path)
    assert (reply.status, reply.body) == (200, b"option A")
    await no_http_channels_left(ours)


async def test_closing_the_channel_without_a_body_sends_the_status_and_no_body(stream_engine, route, session):
    async def accepted(req: Any) -> Any:
        out = req["response"]
        await out.send_message_async(json.dumps({"type": "set_status", "status_code": 202}))
        await out.send_message_async(json.dumps({"type": "set_headers", "headers": {"Location": "/jobs/1"}}))
        await out.close_async()
        return None

    path = unique("/accepted")
    await route(accepted, "POST", path)
    reply = await fetch(session, "POST", stream_engine.http_url + path)
    assert (reply.status, reply.headers["Location"], reply.body) == (202, "/jobs/1", b"")


async def test_client_leaving_mid_stream_frees_the_channels(stream_engine, ours, route, session):
    finished = threading.Event()
    failures: list[BaseException] = []

    async def endless(req: Any) -> Any:
        # Writes until a write fails: once the client stops reading, backpressure blocks the write;
        # once it has left, the engine discards the channel and the pending write raises (after the
        # engine's close handshake gives up, about 2 s, since the reply waits behind unread data).
        out = req["response"]
        try:
            while True:
                await out.write(b"x" * 1024 + b"\n")
                await asyncio.sleep(0)  # yield, so the socket's close is processed between writes
        except Exception as exc:
            failures.append(exc)
        finally:
            finished.set()
        return None

    path = unique("/endless")
    await route(endless, "GET", path)
    async with session.get(stream_engine.http_url + path) as response:
        assert response.status == 200
        await response.content.readuntil(b"\n")
        response.close()  # the client goes away
    await no_http_channels_left(ours)
    assert await asyncio.to_thread(finished.wait, 15) and failures, (
        "the handler's writes did not fail after the client left"
    )
    ok = unique("/after")
    await route(lambda req: {"body": "still serving"}, "GET", ok)
    assert (await fetch(session, "GET", stream_engine.http_url + ok)).json() == "still serving"


# -- limits with channels (an engine of their own) ---------------------------------------------------------
@pytest.fixture
def tight_engine(engine_factory: Callable[..., EngineProcess], tmp_path: Path) -> EngineProcess:
    config = write_config(
        tmp_path / "tight.toml",
        {"http": {"default_timeout": 300, "concurrency_request_limit": 1, "max_body_bytes": 1024}},
    )
    return engine_factory(config=config)


async def test_limits_null_result_timeout_streaming_slot_and_chunked_oversize(tight_engine, session):
    release = threading.Event()
    ctl = register_worker(tight_engine.url, InitOptions(worker_name=unique("tight-ctl")))
    worker = iii.register_worker(tight_engine.url, iii.InitOptions(worker_name=unique("tight")))
    try:

        async def silent(req: Any) -> Any:
            return None  # never touches the response channel

        async def holding(req: Any) -> Any:
            out = req["response"]
            await out.write(b"first\n")
            await asyncio.to_thread(release.wait, 10)
            await out.write(b"second\n")
            await out.close_async()
            return None

        async def reader(req: Any) -> Any:
            raw = await req["request_body"].read_all()
            return {"body": {"len": len(raw)}}

        for function_id, api_path, method, handler in (
            ("tight::silent", "/silent", "GET", silent),
            ("tight::hold", "/hold", "GET", holding),
            ("tight::read", "/read", "POST", reader),
        ):
            worker.register_function(function_id, handler)
            worker.register_trigger(
                {
                    "type": "http",
                    "function_id": function_id,
                    "config": {"api_path": api_path, "http_method": method},
                }
            )
            await wait_bound(ctl, function_id)
        url = tight_engine.http_url
        # A null result and an untouched response channel: nothing to send before the deadline.
        reply = await fetch(session, "GET", url + "/silent")
        assert (reply.status, reply.body) == (504, b"")
        # A streamed response keeps its slot after the deadline; the next request finds none.
        async with session.get(url + "/hold") as held:
            assert held.status == 200
            assert await held.content.readuntil(b"\n") == b"first\n"
            busy = await fetch(session, "GET", url + "/silent")
            assert busy.status == 503
            assert busy.json()["error"]["code"] == "CONCURRENCY_LIMIT"
            release.set()
            assert await held.content.read() == b"second\n"

        # A chunked body (no Content-Length) over max_body_bytes is cut off with a 413.
        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"y" * 512

        reply = await fetch(
            session, "POST", url + "/read", data=chunked(), headers={"Content-Type": "text/plain"}
        )
        assert reply.status == 413
        assert reply.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        reply = await fetch(
            session, "POST", url + "/read", data=b"z" * 100, headers={"Content-Type": "text/plain"}
        )
        assert reply.json() == {"len": 100}
        await no_http_channels_left(ctl)
    finally:
        release.set()
        shutdown_official(worker)
        ctl.shutdown()


# -- the exact frame a worker receives (golden frame E07) -------------------------------------------------
def golden(label: str) -> Any:
    path = Path(__file__).resolve().parents[2] / "golden" / "frames.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(label + " "):
            return json.loads(line.split(" | ", 2)[2])
    raise KeyError(label)


async def test_invokefunction_frame_matches_e07_and_h01_answers(stream_engine, ours, session):
    e07 = golden("E07")
    h01 = golden("H01")
    async with websockets.connect(stream_engine.url, compression=None) as ws:
        assert json.loads(await ws.recv())["type"] == "workerregistered"
        await ws.send(json.dumps({"type": "registerfunction", "id": e07["function_id"]}))
        await ws.send(
            json.dumps(
                {
                    "type": "invokefunction",
                    "function_id": "engine::workers::register",
                    "data": {"name": unique("raw-e07"), "runtime": "python", "pid": os.getpid()},
                    "action": {"type": "void"},
                }
            )
        )
        trigger_id = str(uuid.uuid4())
        await ws.send(
            json.dumps(
                {
                    "type": "registertrigger",
                    "id": trigger_id,
                    "trigger_type": "http",
                    "function_id": e07["function_id"],
                    "config": {"api_path": e07["data"]["path"], "http_method": "GET"},
                    "metadata": {"m": 1},
                }
            )
        )
        await wait_routes(ours, [trigger_id])
        request = asyncio.ensure_future(fetch(session, "GET", stream_engine.http_url + "/users/42?verbose=1"))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame["type"] == "invokefunction" and frame["function_id"] == e07["function_id"]:
                break
        assert sorted(frame) == sorted([*e07, "metadata"])
        uuid.UUID(frame["invocation_id"])
        data, expected = frame["data"], e07["data"]
        assert sorted(data) == sorted(expected)
        for key in ("body", "method", "path", "path_params", "query_params", "trigger"):
            assert data[key] == expected[key], key
        assert frame["metadata"] == {"m": 1}
        for key, direction in (("request_body", "read"), ("response", "write")):
            assert sorted(data[key]) == ["access_key", "channel_id", "direction"]
            assert data[key]["direction"] == direction
        assert data["request_body"]["channel_id"] != data["response"]["channel_id"]
        assert list(data) == sorted(data)  # keys in the real engine's (sorted) order
        await ws.send(
            json.dumps(
                {
                    "type": "invocationresult",
                    "invocation_id": frame["invocation_id"],
                    "function_id": frame["function_id"],
                    "result": h01,
                }
            )
        )
        reply = await request
        assert reply.status == 201
        assert reply.headers["Content-Type"] == "application/json"
        assert reply.json() == h01["body"]


# -- the same with our SDK (iii_typed.http_response) ---------------------------------------------------------
async def test_b10_with_our_sdk_sync_handler(stream_engine, ours, route, session):
    def echo(req: HttpRequest) -> HttpResponse:
        assert req.request_body is not None
        raw = req.request_body.read_all()  # a sync handler runs on its own thread
        return HttpResponse(body={"len": len(raw), "parsed": req.body, "raw": raw.decode()})

    path = unique("/ours-echo")
    await route(echo, "POST", path, client=ours)
    url = stream_engine.http_url + path
    for kwargs, expected in (
        (
            {"data": b'{"a":1}', "headers": {"Content-Type": "application/json"}},
            {"len": 7, "parsed": {"a": 1}},
        ),
        ({"data": b"hello", "headers": {"Content-Type": "text/plain"}}, {"len": 5, "parsed": None}),
        ({}, {"len": 0, "parsed": None}),
    ):
        started = time.monotonic()
        reply = await fetch(session, "POST", url, **kwargs)
        assert time.monotonic() - started < 1.0
        assert reply.status == 200, reply
        body = reply.json()
        assert {"len": body["len"], "parsed": body["parsed"]} == expected
        assert body["raw"] == kwargs.get("data", b"").decode()
    await no_http_channels_left(ours)


async def test_streamed_response_and_events_with_our_sdk(stream_engine, ours, route, session):
    acknowledged = threading.Event()

    async def export(req: HttpRequest) -> None:
        assert req.response is not None
        async with StreamingResponse(req.response) as out:
            await out.set_status_async(201)
            await out.set_headers_async({"Content-Type": "text/plain", "X-Rows": "3"})
            for index in range(3):
                await out.write_async(f"line {index}\n")

    async def ticks(req: HttpRequest) -> None:
        assert req.response is not None
        async with StreamingResponse(req.response) as out:
            await out.start_events_async()
            await out.send_event_async({"n": 1}, event="tick")
            seen = await asyncio.to_thread(acknowledged.wait, 10)
            await out.send_event_async({"n": 2 if seen else -1}, event="tick")

    export_path = unique("/ours-export")
    ticks_path = unique("/ours-ticks")
    await route(export, "GET", export_path, client=ours)
    await route(ticks, "GET", ticks_path, client=ours)
    reply = await fetch(session, "GET", stream_engine.http_url + export_path)
    assert (reply.status, reply.headers["X-Rows"], reply.body) == (201, "3", b"line 0\nline 1\nline 2\n")
    async with session.get(
        stream_engine.http_url + ticks_path, timeout=aiohttp.ClientTimeout(total=20)
    ) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
        assert first == b'event: tick\ndata: {"n":1}\n\n'
        acknowledged.set()
        assert await asyncio.wait_for(response.content.read(), 5) == b'event: tick\ndata: {"n":2}\n\n'
    await no_http_channels_left(ours)
