"""Bad input is logged and skipped; the connection and the engine keep serving (protocol.md §11,
§12b item 2; cases.md B15)."""

from __future__ import annotations

import asyncio
import json
import struct

from engine_raw import unique
from support.waiting import wait_for_async
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from iii_typed.protocol.frames import MAX_MESSAGE_BYTES

DROP_NOTE = "the real iii engine drops it too"
UUID = "8af2ee3a-bb51-4ffd-9b9d-4c57c968f64b"


def _bad_frames() -> list[bytes | str]:
    """200 frames the real engine cannot decode: malformed, unknown type, wrong or missing fields."""
    malformed: list[bytes | str] = [
        "{",
        "not json",
        "[1, 2, 3]",
        "null",
        '"a string"',
        "42",
        b"\xff\xfe{}",
        '{"type": "ping"',
        "{}}",
        "{'type': 'ping'}",
    ]
    unknown = [
        {"type": "nope"},
        {"no_type": 1},
        {"type": 5},
        {"type": None},
        {"type": "observe", "id": "o", "source": {}, "target": {}},
        {"type": "localinvocationstats", "window_ms": 1},
        {"type": "INVOKEFUNCTION", "function_id": "f", "data": {}},
        {"type": ""},
        {"type": ["ping"]},
        {"type": {"nested": "ping"}},
    ]
    wrong = [
        {"type": "invokefunction", "function_id": "f"},  # no data
        {"type": "invokefunction", "function_id": "f", "data": {}, "invocation_id": "not-a-uuid"},
        {"type": "invokefunction", "function_id": 5, "data": {}},
        {"type": "invokefunction", "data": {}},
        {"type": "invokefunction", "function_id": "f", "data": {}, "action": {"type": "teleport"}},
        {"type": "invokefunction", "function_id": "f", "data": {}, "action": {"type": "enqueue"}},
        {"type": "registertrigger", "id": "t", "trigger_type": "http", "function_id": "f"},  # no config
        {"type": "registertriggertype", "id": "tt"},  # no description
        {"type": "registerfunction", "id": 5},
        {"type": "registerfunction"},
        {"type": "registerfunction", "id": "f", "invocation": {"url": "http://x", "method": "post"}},
        {"type": "invocationresult", "invocation_id": "x", "function_id": "f"},
        {"type": "invocationresult", "invocation_id": UUID},
        {"type": "reattach"},
        {"type": "unregistertrigger"},
        {"type": "triggerregistrationresult", "id": "t"},
        {"type": "registerservice"},
        {"type": "unregisterfunction", "id": ["f"]},
        {"type": "invokefunction", "function_id": "f", "data": {}, "namespace": 7},
        {"type": "registertrigger", "id": "t", "trigger_type": 1, "function_id": "f", "config": {}},
    ]
    frames: list[bytes | str] = []
    frames += malformed
    frames += [json.dumps(f) for f in unknown]
    frames += [json.dumps(f) for f in wrong]
    while len(frames) < 200:  # repeat the mix with varying content
        i = len(frames)
        frames.append(json.dumps({"type": f"unknown-{i}", "data": {"i": i}}))
        frames.append(
            json.dumps(
                {"type": "invokefunction", "function_id": f"f{i}", "invocation_id": f"id-{i}", "data": i}
            )
        )
        frames.append(
            json.dumps({"type": "registertrigger", "id": f"t{i}", "trigger_type": "x", "function_id": "f"})
        )
        frames.append(b'{"type":"invokefunction",' + b"x" * i)
    return frames[:200]


async def test_bad_frames_are_skipped_and_the_connection_keeps_serving(engine_factory, workers):
    engine = engine_factory()
    worker = await workers(engine.url)
    fid = f"{unique('ok')}::echo"
    await worker.send({"type": "registerfunction", "id": fid})
    await worker.sync()
    worker.serve(fid, lambda f: f["data"]["v"])
    frames = _bad_frames()
    assert len(frames) == 200
    pongs_before = len(worker.find(type="pong"))
    for frame in frames:
        await worker.send(frame, text=True)
    await worker.send("")  # empty and whitespace-only frames are skipped silently
    await worker.send("  \n ")
    # Oversized: over the 64 MiB limit (dropped, connection kept), and a 20 MiB frame that is fine.
    pad = MAX_MESSAGE_BYTES
    await worker.send(b'{"type":"ping","pad":"' + b"x" * pad + b'"}', text=True)
    await worker.send(b'{"type":"ping","pad":"' + b"y" * (20 * 1024 * 1024) + b'"}', text=True)
    await worker.expect(type="pong", timeout=20)  # the 20 MiB ping
    await worker.sync()
    assert len(worker.find(type="pong")) == pongs_before + 2  # the oversized ping got no answer
    assert await worker.result(fid, {"v": 42}) == 42
    assert await worker.result("engine::health::check", {}) is not None
    answered = {r["function_id"] for r in worker.find(type="invocationresult")}
    assert answered == {fid, "engine::health::check", "engine::workers::register"}  # no reply to bad frames

    def warnings() -> list[str]:
        text = engine.log_path.read_text(encoding="utf-8")
        return [line for line in text.splitlines() if "WARNING" in line and "dropped" in line]

    await wait_for_async(lambda: len(warnings()) >= 201, what="one warning per dropped frame")
    lines = warnings()
    assert sum(DROP_NOTE in line for line in lines) == 200
    assert sum("over the 67108864-byte limit" in line for line in lines) == 1
    assert any("unknown frame type 'nope'" in line for line in lines)
    assert any("data" in line and "invokefunction" in line for line in lines)
    assert any("invocation_id" in line for line in lines)
    assert engine.is_running()


async def test_a_message_over_the_hard_limit_closes_only_that_connection(engine, workers):
    bystander = await workers(engine.url)
    offender = await connect(engine.url, compression=None)
    await offender.recv()
    # Announce a 2 GiB text frame without sending it: the engine refuses it from the header alone.
    header = bytes([0x81, 0xFF]) + struct.pack("!Q", 2**31) + b"\x00\x00\x00\x00"
    offender.transport.write(header)
    try:
        await asyncio.wait_for(offender.recv(), 10)
        raise AssertionError("the engine should have closed the connection")
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 1009
    assert await bystander.result("engine::health::check", {}) is not None
    assert engine.is_running()
