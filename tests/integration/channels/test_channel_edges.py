"""Channel semantics at the edges, against real engine processes (protocol.md §5.1-§5.2, E15, C01).

Reader before / after the writer, a writer closing with no reader (kept, then swept), wrong keys,
a second reader, a reader leaving mid-stream, a writer dropping without closing, channels the
engine no longer knows, backpressure, and the ``engine::channels::list`` extension. Each case
checks the engine still serves afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from iii_typed import III, ChannelReader, ChannelWriter, IIIError, InvocationError
from iii_typed.engine.process import EngineProcess
from tests.integration.channels.channel_support import channel_rows, client, unique
from tests.support.waiting import FACTOR, wait_for

CHUNK = 64 * 1024


def _url(engine: EngineProcess, ref: Any, direction: str | None = None, key: str | None = None) -> str:
    direction = direction or ref.direction
    key = ref.access_key if key is None else key
    return f"{engine.url}/ws/channels/{ref.channel_id}?key={key}&dir={direction}"


class Worker:
    """A client serving helper functions that use channel refs found in their payloads."""

    def __init__(self, iii: III) -> None:
        self.iii = iii
        self.prefix = unique("edge")
        self.pump_started = threading.Event()
        iii.register_function(f"{self.prefix}::read", self._read)
        iii.register_function(f"{self.prefix}::write", self._write)
        iii.register_function(f"{self.prefix}::pump", self._pump)

    @staticmethod
    def _read(data: dict[str, Any]) -> dict[str, Any]:
        reader = data["inp"]
        assert isinstance(reader, ChannelReader)
        texts: list[str] = []
        reader.on_message(texts.append)
        try:
            return {"data": reader.read_all().decode(), "texts": texts}
        except IIIError as exc:
            return {"error": str(exc)}

    @staticmethod
    def _write(data: dict[str, Any]) -> dict[str, Any]:
        writer = data["out"]
        assert isinstance(writer, ChannelWriter)
        try:
            writer.write(data["text"].encode())
            writer.close()
        except IIIError as exc:
            return {"error": str(exc)}
        return {"ok": True}

    def _pump(self, data: dict[str, Any]) -> dict[str, Any]:
        writer = data["out"]
        written = 0
        try:
            for _ in range(10_000):  # 625 MiB at most: the reader leaves long before
                writer.write(b"p" * CHUNK)
                written += 1
                self.pump_started.set()
            writer.close()
        except IIIError as exc:
            return {"written": written, "error": str(exc)}
        return {"written": written}

    def call(self, name: str, payload: dict[str, Any], timeout_ms: int = 20_000) -> Any:
        return self.iii.trigger(
            {"function_id": f"{self.prefix}::{name}", "payload": payload, "timeout_ms": timeout_ms}
        )


@pytest.fixture
def worker(engine: EngineProcess) -> Iterator[Worker]:
    with client(engine.url) as iii:
        yield Worker(iii)


def _still_serves(iii: III) -> None:
    channel = iii.create_channel()
    channel.writer.write(b"still here")
    channel.writer.close()
    assert channel.reader.read_all() == b"still here"


def test_create_result_matches_e15_and_the_buffer_is_clamped(worker: Worker) -> None:
    iii = worker.iii
    result = iii.trigger({"function_id": "engine::channels::create", "payload": {"buffer_size": 16}})
    assert set(result) == {"reader", "writer"}
    assert set(result["reader"]) == set(result["writer"]) == {"access_key", "channel_id", "direction"}
    assert result["reader"]["direction"] == "read" and result["writer"]["direction"] == "write"
    assert result["reader"]["channel_id"] == result["writer"]["channel_id"]
    assert result["reader"]["access_key"] == result["writer"]["access_key"]

    sizes = {}
    for asked in (None, 0, 1, 16, 5000):
        channel = iii.create_channel(asked)
        sizes[asked] = channel_rows(iii)[channel.channel_id]["buffer_size"]
    assert sizes == {None: 64, 0: 1, 1: 1, 16: 16, 5000: 1024}


def test_bad_buffer_sizes_are_refused(worker: Worker) -> None:
    iii = worker.iii
    with pytest.raises(ValueError, match="buffer_size"):
        iii.create_channel(-1)
    with pytest.raises(TypeError, match="buffer_size"):
        iii.create_channel("8")
    for bad in (-1, "8", 1.5):
        with pytest.raises(InvocationError) as caught:
            iii.trigger({"function_id": "engine::channels::create", "payload": {"buffer_size": bad}})
        assert caught.value.code == "deserialization_error"
        assert "buffer_size" in caught.value.message
    _still_serves(iii)


def test_list_reports_sides_owner_and_traffic(worker: Worker) -> None:
    iii = worker.iii
    channel = iii.create_channel(8)
    row = channel_rows(iii)[channel.channel_id]
    assert row["owner_worker_id"] == iii.worker_id
    assert row["reader"] == {"remote_address": None, "state": "waiting", "via": None}
    assert row["writer"]["state"] == "waiting"
    assert row["messages"] == row["bytes"] == 0 and row["ended"] is False and row["error"] is None
    assert "access_key" not in str(row)

    channel.writer.send_message("hello")
    channel.writer.write(b"x" * (CHUNK + 10))  # two binary frames
    channel.writer.close()
    row = channel_rows(iii)[channel.channel_id]
    assert row["writer"]["state"] == "done" and row["writer"]["via"] == "socket"
    assert row["writer"]["remote_address"].startswith("127.0.0.1:")
    assert row["ended"] is True
    assert (row["messages"], row["bytes"]) == (3, len("hello") + CHUNK + 10)
    assert row["buffered_messages"] == 3
    assert channel.reader.read_all() == b"x" * (CHUNK + 10)
    wait_for(
        lambda: channel.channel_id not in channel_rows(iii),
        timeout=5,
        what="forgotten when both sides are done",
    )


def test_reader_connected_before_the_writer(worker: Worker) -> None:
    iii = worker.iii
    channel = iii.create_channel()
    got: dict[str, Any] = {}
    texts: list[str] = []
    channel.reader.on_message(texts.append)
    reading = threading.Thread(target=lambda: got.setdefault("data", channel.reader.read_all()))
    reading.start()
    wait_for(
        lambda: channel_rows(iii)[channel.channel_id]["reader"]["state"] == "connected",
        timeout=5,
        what="the reader is attached",
    )
    assert worker.call("write", {"out": channel.writer_ref, "text": "late writer"}) == {"ok": True}
    reading.join(10 * FACTOR)
    assert got["data"] == b"late writer"
    assert texts == []


def test_reader_after_the_writer_closed(worker: Worker) -> None:
    iii = worker.iii
    channel = iii.create_channel()
    channel.writer.send_message("first")
    channel.writer.write(b"abc")
    channel.writer.send_message("last")
    channel.writer.close()  # nobody reads yet: everything fits in the buffer
    assert worker.call("read", {"inp": channel.reader_ref}) == {"data": "abc", "texts": ["first", "last"]}


def test_an_empty_stream_ends_at_once(worker: Worker) -> None:
    iii = worker.iii
    channel = iii.create_channel()
    channel.writer.close()  # never wrote: it still connects, so the reader sees the end
    assert channel.reader.read_all() == b""


def test_wrong_key_is_404_and_the_engine_keeps_serving(worker: Worker, engine: EngineProcess) -> None:
    iii = worker.iii
    channel = iii.create_channel()
    forged = {**channel.reader_ref.model_dump(), "access_key": "not-the-key"}
    result = worker.call("read", {"inp": forged})
    assert "not found at the engine (HTTP 404)" in result["error"]

    async def raw() -> list[int]:
        statuses = []
        for url in (
            _url(engine, channel.reader_ref, key="wrong"),
            f"{engine.url}/ws/channels/00000000-0000-4000-8000-000000000000?key=x&dir=read",
            f"{engine.url}/ws/channels/{channel.channel_id}?key={channel.reader_ref.access_key}",
            _url(engine, channel.reader_ref, direction="sideways"),
        ):
            with pytest.raises(InvalidStatus) as caught:
                async with connect(url):
                    pass
            statuses.append(caught.value.response.status_code)
        return statuses

    assert asyncio.run(raw()) == [404, 404, 400, 400]
    channel.writer.write(b"ok")
    channel.writer.close()
    assert channel.reader.read_all() == b"ok"
    _still_serves(iii)


def test_a_second_reader_is_refused_and_the_first_gets_everything(
    worker: Worker, engine: EngineProcess
) -> None:
    iii = worker.iii
    channel = iii.create_channel()
    got: dict[str, Any] = {}
    reading = threading.Thread(target=lambda: got.setdefault("data", channel.reader.read_all()))
    reading.start()
    wait_for(
        lambda: channel_rows(iii)[channel.channel_id]["reader"]["state"] == "connected",
        timeout=5,
        what="the first reader is attached",
    )
    second = worker.call("read", {"inp": channel.reader_ref})
    assert "already taken" in second["error"] and "1008" in second["error"]

    async def raw_second_writer() -> tuple[int | None, str | None]:
        async with connect(_url(engine, channel.writer_ref)) as ws:
            await ws.wait_closed()
            return ws.close_code, ws.close_reason

    # Once a socket writer holds the write side, another writer is accepted and closed (§5.2).
    channel.writer.write(b"one")
    code, reason = asyncio.run(raw_second_writer())
    assert code == 1008 and reason is not None and "already taken" in reason
    channel.writer.write(b"two")
    channel.writer.close()
    reading.join(10 * FACTOR)
    assert got["data"] == b"onetwo"


def test_reader_leaving_mid_stream_stops_the_writer(worker: Worker) -> None:
    iii = worker.iii
    channel = iii.create_channel(4)
    outcome: dict[str, Any] = {}
    pump = threading.Thread(
        target=lambda: outcome.setdefault("result", worker.call("pump", {"out": channel.writer_ref}))
    )
    pump.start()
    chunks = iter(channel.reader)
    for _ in range(3):
        assert next(chunks) == b"p" * CHUNK
    channel.reader.close()
    pump.join(20 * FACTOR)
    result = outcome["result"]
    assert "went away" in result["error"], result
    assert 3 <= result["written"] < 10_000
    wait_for(
        lambda: channel.channel_id not in channel_rows(iii), timeout=5, what="the broken channel is forgotten"
    )
    _still_serves(iii)


def test_writer_dropping_without_close_is_an_error_for_the_reader(
    worker: Worker, engine: EngineProcess
) -> None:
    iii = worker.iii
    channel = iii.create_channel()

    async def drop_writer() -> None:
        ws = await connect(_url(engine, channel.writer_ref), compression=None)
        await ws.send(b"partial")
        assert ws.transport is not None
        ws.transport.abort()  # no close frame: the stream is truncated

    asyncio.run(drop_writer())
    with pytest.raises(IIIError, match="without closing"):
        channel.reader.read_all()
    row_gone = channel.channel_id not in channel_rows(iii)
    assert row_gone
    _still_serves(iii)


def test_a_finished_channel_is_gone(worker: Worker) -> None:
    iii = worker.iii
    channel = iii.create_channel()
    channel.writer.write(b"once")
    channel.writer.close()
    assert channel.reader.read_all() == b"once"
    wait_for(lambda: channel.channel_id not in channel_rows(iii), timeout=5, what="forgotten")
    result = worker.call("read", {"inp": channel.reader_ref})
    assert "not found at the engine (HTTP 404)" in result["error"]
    result = worker.call("write", {"out": channel.writer_ref, "text": "again"})
    assert "not found at the engine (HTTP 404)" in result["error"]


def test_a_fast_writer_blocks_and_memory_stays_bounded(worker: Worker) -> None:
    iii = worker.iii
    channel = iii.create_channel(2)
    payload = bytes(range(256)) * (32 * 4096)  # 32 MiB: more than any socket buffer holds
    finished = threading.Event()

    def write() -> None:
        channel.writer.write(payload)
        channel.writer.close()
        finished.set()

    writing = threading.Thread(target=write)
    writing.start()
    wait_for(
        lambda: channel_rows(iii)[channel.channel_id]["buffered_messages"] == 2,
        timeout=5,
        what="the buffer fills up",
    )
    assert not finished.wait(0.5)  # bounded negative check: the writer is held back
    row = channel_rows(iii)[channel.channel_id]
    assert row["buffered_messages"] <= 2 and row["buffered_bytes"] <= 2 * CHUNK
    assert row["bytes"] < len(payload)
    assert channel.reader.read_all() == payload
    assert finished.wait(10 * FACTOR)
    writing.join()


def test_abandoned_channels_are_swept(engine_factory: Any, tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text("[channels]\nsweep_interval_ms = 50\nabandon_after_ms = 400\n", encoding="utf-8")
    proc = engine_factory(config=config)
    with client(proc.url) as iii:
        worker = Worker(iii)
        written = iii.create_channel()  # writer closes, no reader ever comes
        written.writer.write(b"nobody reads this")
        written.writer.close()
        waiting = iii.create_channel()  # a reader waits for a writer that never comes
        outcome: dict[str, Any] = {}
        reading = threading.Thread(
            target=lambda: outcome.setdefault("result", worker.call("read", {"inp": waiting.reader_ref}))
        )
        reading.start()
        rows = channel_rows(iii)
        assert written.channel_id in rows and rows[written.channel_id]["ended"] is True
        wait_for(
            lambda: not {written.channel_id, waiting.channel_id} & set(channel_rows(iii)),
            timeout=5,
            what="both channels swept",
        )
        reading.join(10 * FACTOR)
        assert "swept" in outcome["result"]["error"]
        late = worker.call("read", {"inp": written.reader_ref})
        assert "not found at the engine (HTTP 404)" in late["error"]
        _still_serves(iii)
