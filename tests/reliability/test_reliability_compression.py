"""No WebSocket compression is negotiated on any socket (perf.md §5 G10; docs/engine.md "Routes").

A client that offers ``permessage-deflate`` gets no ``Sec-WebSocket-Extensions`` back from any
engine socket, and the SDK never offers it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from iii_typed import III
from iii_typed.engine.process import EngineProcess
from tests.support.ws_proxy import WsProxy


async def _call(ws: ClientConnection, function_id: str, data: Any) -> Any:
    invocation_id = "6f0c8a52-7d1e-4c57-9a0b-1c2d3e4f5a6b"
    await ws.send(
        json.dumps(
            {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": function_id,
                "data": data,
            }
        )
    )
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "invocationresult" and frame["invocation_id"] == invocation_id:
            return frame


async def test_no_socket_negotiates_compression(engine: EngineProcess) -> None:
    offered = "permessage-deflate; client_max_window_bits"
    urls = [engine.url + "/", engine.url + "/otel"]
    if "streams" in engine.addresses:
        urls.append(engine.streams_url + "/")
    async with ws_connect(engine.url, compression="deflate") as worker:
        assert worker.request is not None and worker.response is not None
        assert offered.split(";")[0] in worker.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in worker.response.headers
        answer = await _call(worker, "engine::channels::create", {"buffer_size": None})
        if "result" in answer:  # the channels built-in runs: its sockets too
            writer = answer["result"]["writer"]
            reader = answer["result"]["reader"]
            for ref in (writer, reader):
                urls.append(
                    f"{engine.url}/ws/channels/{ref['channel_id']}?key={ref['access_key']}&dir={ref['direction']}"
                )
    checked = 0
    for url in urls:
        async with ws_connect(url, compression="deflate") as ws:
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers, url
            checked += 1
    assert checked == len(urls) >= 2


def test_the_sdk_never_offers_compression(
    engine: EngineProcess, proxies: Callable[[int], WsProxy], connect: Callable[..., III]
) -> None:
    proxy = proxies(engine.port)
    connect(proxy.url)
    request = proxy.connections[0].request_headers
    assert "sec-websocket-extensions" not in request
    assert "sec-websocket-extensions" not in proxy.connections[0].response_headers
