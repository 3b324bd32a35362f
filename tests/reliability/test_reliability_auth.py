"""Engine token authentication and the SDK's fatal handling of a refusal (issue 8 items 1-2;
protocol.md §1.5; cases.md B14; decisions "Policies": authentication failure is fatal)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from reliability_support import StateRecorder, fast_options
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from iii_typed import III, RegistrationRejectedError, register_worker
from iii_typed.engine.process import EngineProcess
from tests.support.waiting import holds_for
from tests.support.ws_proxy import WsProxy

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """One engine for the module that requires ``TOKEN`` (given through ``III_ENGINE_TOKEN``)."""
    log = tmp_path_factory.mktemp("secured") / "engine.log"
    proc = EngineProcess(log_path=log, env={"III_ENGINE_TOKEN": TOKEN}).start()
    yield proc
    proc.stop()


def test_a_worker_with_the_token_from_iii_token_connects(
    secured: EngineProcess,
    proxies: Callable[[int], WsProxy],
    connect: Callable[..., III],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("III_TOKEN", TOKEN)
    proxy = proxies(secured.port)
    iii = connect(proxy.url)
    iii.register_function("auth::echo", lambda data: data)
    assert iii.trigger({"function_id": "auth::echo", "payload": [1]}) == [1]
    assert proxy.connections[0].request_headers["authorization"] == f"Bearer {TOKEN}"
    channel = iii.create_channel()  # its sockets carry the token too
    channel.writer.write(b"through the channel")
    channel.writer.close()
    assert channel.reader.read_all() == b"through the channel"


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_b14_authentication_failure_is_fatal_after_one_attempt(
    secured: EngineProcess,
    proxies: Callable[[int], WsProxy],
    monkeypatch: pytest.MonkeyPatch,
    header: str | None,
) -> None:
    monkeypatch.delenv("III_TOKEN", raising=False)
    proxy = proxies(secured.port)
    headers = {"Authorization": header} if header is not None else None
    started = time.monotonic()
    with pytest.raises(RegistrationRejectedError) as info:
        register_worker(proxy.url, fast_options(headers=headers))
    assert time.monotonic() - started < 2
    assert info.value.code == "AUTH_ERROR"
    assert "401" in str(info.value) and "III_TOKEN" in str(info.value)
    assert len(proxy.connections) == 1
    assert proxy.connections[0].response_status == 401
    assert proxy.connections[0].response_headers["www-authenticate"].startswith("Bearer")


def test_b14_failed_state_is_reported_once_and_calls_raise_at_once(
    secured: EngineProcess, proxies: Callable[[int], WsProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("III_TOKEN", "not-the-token")
    proxy = proxies(secured.port)
    client = III(proxy.url, fast_options())
    try:
        recorder = StateRecorder.attach(client)
        recorder.wait("failed", timeout=3)
        started = time.monotonic()
        with pytest.raises(RegistrationRejectedError):
            client.trigger({"function_id": "engine::health::check", "payload": {}, "timeout_ms": 30000})
        assert time.monotonic() - started < 0.1
        # Nothing more happens: no retry over 5x the initial reconnect delay.
        holds_for(lambda: len(proxy.connections) == 1, 0.5, what="one connection attempt, no retry")
        assert recorder.states.count("failed") == 1 and recorder.states[-1] == "failed"
        assert client._conn.attempts == 1
    finally:
        client.shutdown()


async def test_otel_channel_and_stream_sockets_require_the_token_too(secured: EngineProcess) -> None:
    good = {"Authorization": f"Bearer {TOKEN}"}
    urls = [secured.url + p for p in ("/", "/otel", "/ws/channels/0b4e8a1c?key=k&dir=read", "/nowhere")]
    urls.append(secured.streams_url + "/")  # the stream listener of the streams built-in
    for url in urls:
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(url, compression=None)
        assert refused.value.response.status_code == 401, url
        with pytest.raises(InvalidStatus) as wrong:
            await ws_connect(url, additional_headers={"Authorization": "Bearer x"})
        assert wrong.value.response.status_code == 401, url
    for url in (secured.url + "/otel", secured.streams_url + "/"):
        async with ws_connect(url, additional_headers=good, compression=None) as ws:
            await ws.send(b"OTLP{}")
            await ws.ping()
    with pytest.raises(InvalidStatus) as unknown:
        await ws_connect(secured.url + "/ws/channels/0b4e8a1c?key=k&dir=read", additional_headers=good)
    assert unknown.value.response.status_code == 404  # authenticated: the channel itself is unknown
    assert secured.log_path is not None
    log = secured.log_path.read_text(encoding="utf-8")
    assert "missing bearer token" in log and "invalid bearer token" in log and TOKEN not in log


def test_the_token_can_be_given_on_the_command_line(
    engine_factory: Callable[..., EngineProcess],
    connect: Callable[..., III],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("III_TOKEN", raising=False)
    engine = engine_factory(extra_args=["--token", TOKEN])
    iii = connect(engine.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert iii.trigger({"function_id": "engine::health::check", "payload": {}}) is not None
    with pytest.raises(RegistrationRejectedError):
        register_worker(engine.url, fast_options())
