"""Channels through generated stubs against a real engine (protocol.md §5, §6.6).

* ``--triggers http``: the ``on_http`` helper's handler receives the request body and response
  channel as live ``ChannelReader``/``ChannelWriter`` objects, answers buffered or streamed;
* a worker function whose request model has a ``ChannelReader`` field: the generated request
  model takes ``channel.reader_ref``, and the bytes written on the channel reach the worker.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from iii_codegen.catalog import fetch_catalog
from iii_codegen.cli import main
from pydantic import BaseModel
from support.stubgen import import_path
from support.waiting import wait_for

from iii_typed import III, ChannelReader, ChannelWriter, InitOptions, register_worker
from iii_typed.engine.process import EngineProcess
from iii_typed.http_response import HttpResponse, StreamingResponse


class HashIn(BaseModel):
    src: ChannelReader
    label: str
    sink: ChannelWriter | None = None


class HashOut(BaseModel):
    label: str
    sha256: str
    size: int


def hash_channel(data: HashIn) -> HashOut:
    body = data.src.read_all()
    if data.sink is not None:
        with data.sink:
            data.sink.write(body[::-1])
    return HashOut(label=data.label, sha256=hashlib.sha256(body).hexdigest(), size=len(body))


def _options(name: str) -> InitOptions:
    return InitOptions(
        worker_name=name, reconnection_config={"initial_delay_ms": 50}, invocation_timeout_ms=10_000
    )


@pytest.fixture
def clients(fresh_engine: EngineProcess) -> Iterator[tuple[III, III]]:
    worker = register_worker(fresh_engine.url, _options("chan-worker"))
    caller = register_worker(fresh_engine.url, _options("chan-caller"))
    try:
        yield worker, caller
    finally:
        caller.shutdown()
        worker.shutdown()


def _generate(engine: EngineProcess, tmp_path: Path, name: str, *globs: str) -> ModuleType:
    out = tmp_path / f"{name}.py"
    assert main(["generate", "--url", engine.url, *globs, "-o", str(out)]) == 0
    return import_path(out, name)


def _wait_bound(iii: III, function_id: str) -> None:
    def bound() -> bool:
        listed = iii.trigger(
            {
                "function_id": "engine::registered-triggers::list",
                "payload": {"trigger_type": "http", "function_id": function_id},
            }
        )
        return bool(listed["registered_triggers"])

    wait_for(bound, 10, what=f"the http route of {function_id}")


async def _post(url: str, body: bytes) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        return response.status, await response.read()


async def test_on_http_handler_gets_live_channels(
    fresh_engine: EngineProcess, clients: tuple[III, III], tmp_path: Path
) -> None:
    worker, _ = clients
    module = _generate(fresh_engine, tmp_path, "http_stubs", "--triggers", "http")
    seen: list[Any] = []

    def route(request: Any) -> HttpResponse:
        seen.append(request)
        body = request.request_body.read_all()
        return HttpResponse(status_code=201, body={"got": body.decode(), "method": request.method})

    async def stream(request: Any) -> None:
        async with StreamingResponse(request.response) as out:
            await out.set_status_async(202)
            await out.write_async(b"streamed:")
            await out.write_async(await request.request_body.read_all_async())

    client = module.Client(worker)
    client.on_http("helpers::route", route, module.HttpConfig(api_path="/helpers", http_method="POST"))
    module.AsyncClient(worker).on_http(
        "helpers::stream", stream, module.HttpConfig(api_path="/stream", http_method="POST")
    )
    _wait_bound(worker, "helpers::route")
    _wait_bound(worker, "helpers::stream")

    status, body = await _post(f"{fresh_engine.http_url}/helpers", b"hello")
    assert (status, body) == (201, b'{"got":"hello","method":"POST"}')
    assert type(seen[0]) is module.HttpPayload
    assert isinstance(seen[0].request_body, ChannelReader) and isinstance(seen[0].response, ChannelWriter)
    assert await _post(f"{fresh_engine.http_url}/stream", b"abc") == (202, b"streamed:abc")


def test_request_model_with_a_channel_reader_takes_the_callers_ref(
    fresh_engine: EngineProcess, clients: tuple[III, III], tmp_path: Path
) -> None:
    worker, caller = clients
    worker.register_function("chan::hash", hash_channel)
    wait_for(
        lambda: any(f.function_id == "chan::hash" for f in fetch_catalog(fresh_engine.url).functions),
        10,
        what="chan::hash registered",
    )
    module = _generate(fresh_engine, tmp_path, "chan_stubs_live", "--functions", "chan::*")
    payload = b"some bytes " * 10_000
    source = caller.create_channel()
    back = caller.create_channel()

    def feed() -> None:
        with source.writer:
            source.writer.write(payload)

    feeder = threading.Thread(target=feed)
    feeder.start()
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(back.reader.read_all()))
    reader.start()
    try:
        result = module.Client(caller).chan.hash(
            module.HashIn(src=source.reader_ref, label="x", sink=back.writer_ref)
        )
    finally:
        feeder.join(10)
        reader.join(10)
    assert type(result) is module.HashOut
    assert (result.label, result.size) == ("x", len(payload))
    assert result.sha256 == hashlib.sha256(payload).hexdigest()
    assert received == [payload[::-1]]
