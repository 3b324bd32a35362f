"""The engine survives arbitrary bytes and JSON on every socket and keeps answering well-formed
calls (issue 8 item 4; protocol.md §1.1, §1.2, §11, §12b item 2).

One engine process serves the whole module. Each socket gets generated traffic — valid frames of
every type (made safe: no HTTP-invoked registrations), frames the codec refuses, raw bytes,
telemetry-prefixed binary frames, arbitrary JSON — and after every example a barrier proves that
the socket is still read and the engine still answers: a round trip on the fuzzed connection itself
and a call between two SDK workers. The worker socket receives 10,000 generated frames per run.
"""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from frame_strategies import frames, invalid_messages, json_values, text
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from iii_typed import III, InitOptions, ReconnectionConfig, register_worker
from iii_typed.engine.process import EngineProcess
from iii_typed.protocol import codec
from iii_typed.protocol.frames import InvokeFunction, RegisterFunction

BATCH = 50
WORKER_EXAMPLES = 200  # x 50 = 10,000 frames on the worker socket
SENT: dict[str, int] = {}


class Engine:
    """The module's engine, two SDK workers that check it keeps serving, and its log."""

    def __init__(self, proc: EngineProcess) -> None:
        self.proc = proc
        # No keepalive: its pings draw from the global `random` while hypothesis generates data.
        options = InitOptions(
            reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_delay_ms=500),
            keepalive_interval_ms=None,
        )
        self.server = register_worker(proc.url, options)
        self.server.register_function("fuzz::echo", lambda data: {"echo": data.get("v")})
        self.caller: III = register_worker(proc.url, options)
        self.calls = 0

    def check(self) -> None:
        """The engine routes a well-formed call between two workers."""
        self.calls += 1
        result = self.caller.trigger(
            {"function_id": "fuzz::echo", "payload": {"v": self.calls}, "timeout_ms": 5000}
        )
        assert result == {"echo": self.calls}
        assert self.proc.is_running()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    log = tmp_path_factory.mktemp("fuzz") / "engine.log"
    proc = EngineProcess(log_path=log).start()
    engine = Engine(proc)
    try:
        yield engine
    finally:
        engine.server.shutdown()
        engine.caller.shutdown()
        proc.stop()


# -- generated traffic --------------------------------------------------------------------------
def _safe(frame: BaseModel) -> BaseModel:
    """Valid frames made safe to throw at a shared engine: no HTTP-invoked registration (the
    engine would call out to the URL), invocations aimed at ``fuzz::*`` ids or the health check."""
    if isinstance(frame, RegisterFunction) and frame.invocation is not None:
        return RegisterFunction(type="registerfunction", id=frame.id)
    if isinstance(frame, InvokeFunction):
        frame.function_id = (
            "engine::health::check"
            if frame.function_id.startswith("engine::")
            else f"fuzz::{frame.function_id}"
        )
    return frame


_TELEMETRY = st.tuples(st.sampled_from([b"OTLP", b"MTRC", b"LOGS"]), st.binary(max_size=64)).map(b"".join)

#: One message: ``(payload, is_text)``.
messages: st.SearchStrategy[tuple[bytes, bool]] = st.one_of(
    frames().map(_safe).map(lambda f: (codec.encode(f), True)),
    invalid_messages().map(lambda case: (case[0], True)),
    st.binary(max_size=96).map(lambda b: (b, False)),
    _TELEMETRY.map(lambda b: (b, False)),
    json_values.map(lambda v: (json.dumps(v).encode(), True)),
)


def _send(ws: ClientConnection, payload: bytes, is_text: bool) -> None:
    if is_text:
        try:
            ws.send(payload.decode("utf-8"))
        except UnicodeDecodeError:
            ws.send(payload, text=False)  # not UTF-8: it can only travel as a binary frame
    else:
        ws.send(payload, text=False)


def _barrier(ws: ClientConnection) -> None:
    """Round trip on the fuzzed worker connection: everything sent before has been processed."""
    invocation_id = str(uuid.uuid4())
    frame = {
        "type": "invokefunction",
        "invocation_id": invocation_id,
        "function_id": "engine::health::check",
        "data": {},
    }
    ws.send(json.dumps(frame))
    while True:
        reply = json.loads(ws.recv(timeout=10))
        if reply.get("type") == "invocationresult" and reply.get("invocation_id") == invocation_id:
            assert "result" in reply, reply
            return


def _drain(ws: ClientConnection) -> None:
    """Read whatever the server sent (a socket that is never read would be closed as stuck)."""
    try:
        while True:
            ws.recv(timeout=0)
    except TimeoutError:
        return


def _ping(ws: ClientConnection) -> None:
    _drain(ws)
    assert ws.ping().wait(10), "no pong: the socket is not read any more"


@pytest.fixture(scope="module")
def worker_socket(fuzzed: Engine) -> Iterator[ClientConnection]:
    with ws_connect(fuzzed.proc.url, compression=None, max_size=None) as ws:
        ws.recv(timeout=10)  # workerregistered
        yield ws


# -- the worker socket `/` ------------------------------------------------------------------------
@settings(max_examples=WORKER_EXAMPLES)
@given(st.lists(messages, min_size=BATCH, max_size=BATCH))
def test_the_worker_socket_survives_anything_and_keeps_answering(
    fuzzed: Engine, worker_socket: ClientConnection, batch: list[tuple[bytes, bool]]
) -> None:
    for payload, is_text in batch:
        _send(worker_socket, payload, is_text)
    SENT["worker"] = SENT.get("worker", 0) + len(batch)
    _barrier(worker_socket)
    fuzzed.check()


def test_ten_thousand_frames_reached_the_worker_socket(
    fuzzed: Engine, worker_socket: ClientConnection
) -> None:
    assert SENT.get("worker", 0) >= WORKER_EXAMPLES * BATCH
    _barrier(worker_socket)
    assert fuzzed.proc.log_path is not None
    log = Path(fuzzed.proc.log_path).read_text(encoding="utf-8")
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]


# -- /otel, channels, the stream listener --------------------------------------------------------
@pytest.mark.parametrize("socket_name", ["otel", "channel-writer", "channel-reader", "streams"])
@settings(max_examples=20)
@given(batch=st.lists(messages, min_size=20, max_size=20))
def test_the_other_sockets_survive_anything(
    fuzzed: Engine, socket_name: str, batch: list[tuple[bytes, bool]]
) -> None:
    url = _socket_url(fuzzed, socket_name)
    with ws_connect(url, compression=None, max_size=None) as ws:
        for payload, is_text in batch:
            try:
                _send(ws, payload, is_text)
            except ConnectionClosed:
                break  # a channel side may end the socket (e.g. a reader sending data): allowed
        else:
            if socket_name != "channel-reader":
                _ping(ws)
        SENT[socket_name] = SENT.get(socket_name, 0) + len(batch)
    fuzzed.check()


def _socket_url(fuzzed: Engine, name: str) -> str:
    if name == "otel":
        return fuzzed.proc.url + "/otel"
    if name == "streams":
        return fuzzed.proc.streams_url + "/"
    refs = fuzzed.caller.trigger(
        {"function_id": "engine::channels::create", "payload": {"buffer_size": None}}
    )
    ref = refs["writer" if name == "channel-writer" else "reader"]
    return f"{fuzzed.proc.url}/ws/channels/{ref['channel_id']}?key={ref['access_key']}&dir={ref['direction']}"


def test_a_stream_subscription_still_works_after_the_fuzz(fuzzed: Engine) -> None:
    with ws_connect(fuzzed.proc.streams_url + "/", compression=None) as ws:
        join = {"subscriptionId": "s1", "streamName": "fuzz-stream", "groupId": "g", "id": "i"}
        ws.send(json.dumps({"type": "join", "data": join}))
        fuzzed.caller.trigger(
            {
                "function_id": "stream::set",
                "payload": {"stream_name": "fuzz-stream", "group_id": "g", "item_id": "i", "data": {"n": 1}},
            }
        )
        events = [json.loads(ws.recv(timeout=5)) for _ in range(2)]
        assert [e["event"]["type"] for e in events] == ["sync", "create"]


# -- the HTTP port -------------------------------------------------------------------------------
_METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO"])
_PATHS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=40)


@settings(max_examples=300)
@given(
    method=_METHODS,
    path=_PATHS,
    body=st.binary(max_size=256) | json_values.map(lambda v: json.dumps(v).encode()),
    headers=st.dictionaries(
        st.sampled_from(["Content-Type", "X-Fuzz", "Accept", "Authorization"]),
        text.filter(lambda t: t.isprintable() and "\n" not in t and "\r" not in t and t.isascii()),
        max_size=3,
    ),
)
def test_the_http_port_survives_arbitrary_requests(
    fuzzed: Engine, method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    host, port = _http_address(fuzzed)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, "/" + path.lstrip("/"), body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        assert 100 <= response.status < 600
    finally:
        conn.close()
    SENT["http"] = SENT.get("http", 0) + 1


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=512))
def test_the_http_port_survives_raw_garbage(fuzzed: Engine, garbage: bytes) -> None:
    host, port = _http_address(fuzzed)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        try:
            while sock.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            pass


def test_the_http_port_still_routes_after_the_fuzz(fuzzed: Engine) -> None:
    host, port = _http_address(fuzzed)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/no/such/route")
        response = conn.getresponse()
        assert response.status == 404
        assert response.read()
    finally:
        conn.close()
    fuzzed.check()


def _http_address(fuzzed: Engine) -> tuple[str, int]:
    host, _, port = fuzzed.proc.http_url.removeprefix("http://").partition(":")
    return host, int(port)


def test_nothing_crashed(fuzzed: Engine) -> None:
    fuzzed.check()
    assert fuzzed.proc.log_path is not None
    log = Path(fuzzed.proc.log_path).read_text(encoding="utf-8")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 300) :][:3000]
    assert fuzzed.server.get_connection_state() == "connected"
    assert fuzzed.caller.get_connection_state() == "connected"
