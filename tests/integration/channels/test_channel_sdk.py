"""The SDK's channel API against a real engine: ref resolution, sync and async forms, typed
handlers, callbacks, the loop-thread guard and the official client's helpers (protocol.md §4.8, §5).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import BaseModel

from iii_typed import Channel, ChannelReader, ChannelWriter, IIIError, InvocationError
from iii_typed.channels import StreamChannelRef
from iii_typed.engine.process import EngineProcess
from tests.integration.channels.channel_support import client, unique
from tests.support.official import shutdown_official
from tests.support.waiting import wait_for


class Job(BaseModel):
    """A typed handler's input holding live channel sides."""

    name: str
    out: ChannelWriter
    inputs: list[ChannelReader] = []


def typed_job(job: Job) -> dict[str, Any]:
    assert isinstance(job.out, ChannelWriter)
    joined = b"".join(reader.read_all() for reader in job.inputs)
    job.out.write(job.name.encode() + b":" + joined)
    job.out.close()
    return {"readers": len(job.inputs)}


def test_refs_anywhere_in_a_payload_arrive_as_live_objects(engine: EngineProcess) -> None:
    seen: dict[str, Any] = {}

    def inspect_payload(data: dict[str, Any]) -> dict[str, Any]:
        seen.update(data)
        return {
            "a": type(data["a"][0]["w"]).__name__,
            "b": type(data["b"]["c"]["d"]).__name__,
            "not_a_ref": data["plain"],
        }

    with client(engine.url) as iii:
        name = unique("sdk::inspect")
        iii.register_function(name, inspect_payload)
        channel = iii.create_channel()
        plain = {"channel_id": 1, "access_key": "k", "direction": "read"}
        result = iii.trigger(
            {
                "function_id": name,
                "payload": {
                    "a": [{"w": channel.writer_ref}],
                    "b": {"c": {"d": channel.reader_ref.model_dump()}},
                    "plain": plain,
                },
            }
        )
        assert result == {"a": "ChannelWriter", "b": "ChannelReader", "not_a_ref": plain}
        assert seen["a"][0]["w"].ref == channel.writer_ref
        assert seen["b"]["c"]["d"].channel_id == channel.channel_id


def test_typed_handler_fields_hold_channel_sides(engine: EngineProcess) -> None:
    with client(engine.url) as iii:
        name = unique("sdk::typed")
        iii.register_function(name, typed_job)
        out = iii.create_channel()
        first, second = iii.create_channel(), iii.create_channel()
        for channel, text in ((first, b"one"), (second, b"two")):
            channel.writer.write(text)
            channel.writer.close()
        result = iii.trigger(
            {
                "function_id": name,
                "payload": {
                    "name": "job",
                    "out": out.writer_ref,
                    "inputs": [first.reader_ref, second.reader_ref],
                },
            }
        )
        assert result == {"readers": 2}
        assert out.reader.read_all() == b"job:onetwo"
        # A model holding a live side serialises it back to its ref.
        dumped = Job(name="x", out=out.writer).model_dump(mode="json")
        assert dumped["out"] == out.writer_ref.model_dump()
        schema = Job.model_json_schema()
        assert schema["properties"]["out"]["properties"]["direction"] == {"const": "write"}


def test_async_forms_from_a_foreign_event_loop_and_callbacks_in_order(engine: EngineProcess) -> None:
    async def producer(data: dict[str, Any]) -> None:
        out: ChannelWriter = data["out"]
        async with out:
            for index in range(5):
                await out.send_message_async(f"before {index}")
                await out.write_async(bytes([index]) * 70_000)  # two frames each

    with client(engine.url) as iii:
        name = unique("sdk::producer")
        iii.register_function(name, producer)

        async def main() -> tuple[list[Any], bytes]:
            channel = await iii.create_channel_async()
            events: list[Any] = []
            received = bytearray()

            async def on_text(text: str) -> None:  # a coroutine callback is awaited
                await asyncio.sleep(0)
                events.append((text, len(received)))

            channel.reader.on_message(on_text)
            await iii.trigger_async(
                {"function_id": name, "payload": {"out": channel.writer_ref}, "action": {"type": "void"}}
            )
            async for chunk in channel.reader:
                assert len(chunk) <= 64 * 1024
                received.extend(chunk)
            return events, bytes(received)

        events, received = asyncio.run(main())
        assert events == [(f"before {i}", i * 70_000) for i in range(5)]
        assert received == b"".join(bytes([i]) * 70_000 for i in range(5))


def test_blocking_forms_on_the_sdk_loop_raise_a_clear_error(engine: EngineProcess) -> None:
    async def misuse(data: dict[str, Any]) -> None:
        data["inp"].read_all()

    async def misuse_writer(data: dict[str, Any]) -> None:
        data["out"].write(b"x")

    with client(engine.url) as iii:
        reader_fn, writer_fn = unique("sdk::misuse"), unique("sdk::misuse")
        iii.register_function(reader_fn, misuse)
        iii.register_function(writer_fn, misuse_writer)
        channel = iii.create_channel()
        with pytest.raises(InvocationError) as caught:
            iii.trigger({"function_id": reader_fn, "payload": {"inp": channel.reader_ref}})
        assert "ChannelReader.read_all() blocks" in caught.value.message
        assert "read_all_async" in caught.value.message
        with pytest.raises(InvocationError) as caught:
            iii.trigger({"function_id": writer_fn, "payload": {"out": channel.writer_ref}})
        assert "ChannelWriter.write() blocks" in caught.value.message
        assert "write_async" in caught.value.message
        # Nothing was consumed: the channel still works.
        channel.writer.write(b"fine")
        channel.writer.close()
        assert channel.reader.read_all() == b"fine"


def test_bad_arguments_lose_nothing(engine: EngineProcess) -> None:
    with client(engine.url) as iii:
        channel = iii.create_channel()
        with pytest.raises(TypeError, match="send_message"):
            channel.writer.write("text")
        with pytest.raises(TypeError, match="bytes-like"):
            channel.writer.write(42)
        with pytest.raises(TypeError, match="str"):
            channel.writer.send_message(b"bytes")
        channel.writer.write(bytearray(b"ab") + memoryview(b"cd"))
        channel.writer.close()
        channel.writer.close()  # idempotent
        with pytest.raises(IIIError, match="closed"):
            channel.writer.write(b"late")
        assert channel.reader.read_all() == b"abcd"
        assert channel.reader.read_all() == b""  # the end stays the end


def test_a_writer_with_a_callback_error_keeps_reading(engine: EngineProcess) -> None:
    with client(engine.url) as iii:
        channel = iii.create_channel()

        def broken(text: str) -> None:
            raise RuntimeError("callback bug")

        texts: list[str] = []
        channel.reader.on_message(broken)
        channel.reader.on_message(texts.append)
        channel.writer.send_message("a")
        channel.writer.write(b"1")
        channel.writer.send_message("b")
        channel.writer.close()
        assert list(channel.reader) == [b"1"]
        assert texts == ["a", "b"]


def test_official_client_channels_interoperate_with_our_handlers(engine: EngineProcess) -> None:
    iii_official = pytest.importorskip("iii")
    from iii.helpers import create_channel as official_create_channel

    def double(data: dict[str, Any]) -> dict[str, Any]:
        source: ChannelReader = data["inp"]
        sink: ChannelWriter = data["out"]
        texts: list[str] = []
        source.on_message(texts.append)
        with sink:
            for chunk in source:
                sink.write(chunk * 2)
            sink.send_message("done")
        return {"texts": texts}

    with client(engine.url) as iii:
        name = unique("sdk::double")
        iii.register_function(name, double)
        official = iii_official.register_worker(
            engine.url, iii_official.InitOptions(worker_name=unique("official"))
        )
        try:
            inp: Any = official_create_channel(official)
            out: Any = official_create_channel(official)

            async def drive() -> tuple[Any, bytes, list[str]]:
                texts: list[str] = []
                out.reader.on_message(texts.append)
                await inp.writer.send_message_async("go")
                await inp.writer.write(b"xy" * 50_000)
                await inp.writer.close_async()
                result = await asyncio.to_thread(
                    official.trigger,
                    {
                        "function_id": name,
                        "payload": {"inp": inp.reader_ref.model_dump(), "out": out.writer_ref.model_dump()},
                    },
                )
                data = await out.reader.read_all()
                return result, data, texts

            result, data, texts = asyncio.run(drive())
        finally:
            shutdown_official(official)
        assert result == {"texts": ["go"]}
        assert data == b"xyxy" * 50_000
        assert texts == ["done"]


def test_channel_and_ref_types(engine: EngineProcess) -> None:
    with client(engine.url) as iii:
        channel = iii.create_channel()
        assert isinstance(channel, Channel)
        assert isinstance(channel.writer_ref, StreamChannelRef) and channel.writer_ref.direction == "write"
        assert channel.reader_ref.direction == "read"
        assert channel.reader.ref == channel.reader_ref
        assert channel.channel_id in repr(channel.writer)
        with pytest.raises(ValueError, match="needs a 'read' ref"):
            ChannelReader(iii, channel.writer_ref)
        with pytest.raises(TypeError, match="needs an iii client"):
            ChannelWriter(object(), channel.writer_ref)
        done = threading.Event()

        def close_later() -> None:
            with channel.writer as writer:
                writer.write(b"ctx")
            done.set()

        thread = threading.Thread(target=close_later)
        thread.start()
        with channel.reader as reader:
            assert reader.read_all() == b"ctx"
        thread.join()
        assert done.is_set()


def test_streamed_results_with_cancelled_readers_leave_nothing_behind(engine: EngineProcess) -> None:
    """cases.md B21's workload on the channel side: 100 invocations each return a reader ref fed
    by a task; the caller cancels 10 reads midway. Every other stream arrives whole, the cancelled
    readers close cleanly, and the engine forgets all 100 channels."""
    outcomes: list[str] = []

    with client(engine.url) as worker, client(engine.url) as caller:
        name = unique("sdk::streamer")
        pumps: set[asyncio.Task[None]] = set()

        release = threading.Event()

        async def streamer(data: dict[str, Any]) -> dict[str, Any]:
            channel = await worker.create_channel_async()
            held = data["n"] % 10 == 3  # these streams stop after one chunk until `release`

            async def pump() -> None:
                try:
                    for index in range(5):
                        await channel.writer.write_async(str(index).encode())
                        if held and index == 0:
                            await asyncio.to_thread(release.wait, 20)
                    await channel.writer.close_async()
                    outcomes.append("ok")
                except IIIError as exc:
                    outcomes.append(str(exc))

            task = asyncio.get_running_loop().create_task(pump())
            pumps.add(task)
            task.add_done_callback(pumps.discard)
            return {"channel": channel.reader_ref}

        worker.register_function(name, streamer)

        async def one(index: int) -> tuple[str, bytes | None]:
            result = await caller.trigger_async({"function_id": name, "payload": {"n": index}})
            reader = ChannelReader(caller, result["channel"])
            if index % 10 == 3:
                assert await anext(aiter(reader)) == b"0"
                reading = asyncio.ensure_future(reader.read_all_async())  # blocks: the pump is held
                done, _ = await asyncio.wait({reading}, timeout=0.05)
                assert not done
                reading.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await reading
                await reader.close_async()
                return result["channel"]["channel_id"], None
            return result["channel"]["channel_id"], await reader.read_all_async()

        results = asyncio.run(_gather(one(i) for i in range(100)))
        release.set()
        assert sum(1 for _, data in results if data is None) == 10
        assert all(data == b"01234" for _, data in results if data is not None)
        ids = {channel_id for channel_id, _ in results}

        def forgotten() -> bool:
            listed = caller.trigger({"function_id": "engine::channels::list", "payload": {}})
            return not ids & {row["channel_id"] for row in listed["channels"]}

        wait_for(forgotten, timeout=10, what="all 100 channels forgotten")
        wait_for(lambda: len(outcomes) == 100, timeout=10, what="every pump finished")
        # The 90 streams read to the end all succeeded. A held pump either learns that its reader
        # went away (its next write fails) or, when it wrote and closed before the engine had
        # processed the reader's close, finished into the buffer: a writer that already ended has
        # nobody left to tell. Either way nothing else may fail.
        failures = [outcome for outcome in outcomes if outcome != "ok"]
        assert outcomes.count("ok") >= 90, failures
        assert len(failures) <= 10 and all("went away" in failure for failure in failures), failures


async def _gather(coros: Any) -> list[Any]:
    return list(await asyncio.gather(*coros))


def test_http_control_frames_are_c02_and_c03(engine: EngineProcess) -> None:
    from iii_typed.http_response import StreamingResponse

    with client(engine.url) as iii:
        channel = iii.create_channel()
        texts: list[str] = []
        channel.reader.on_message(texts.append)
        with StreamingResponse(channel.writer) as out:
            out.set_status(201)
            out.set_headers({"x": "y"})
            out.write("body")
        assert channel.reader.read_all() == b"body"
        assert texts == [
            '{"type":"set_status","status_code":201}',
            '{"type":"set_headers","headers":{"x":"y"}}',
        ]


def test_shutting_down_mid_stream_breaks_the_stream_for_the_reader(engine: EngineProcess) -> None:
    with client(engine.url) as reader_client:
        channel = reader_client.create_channel()
        with client(engine.url) as writer_client:
            writer = ChannelWriter(writer_client, channel.writer_ref)
            writer.write(b"partial")
        # the writer's client shut down without closing the channel
        with pytest.raises(IIIError, match="without closing"):
            channel.reader.read_all()
