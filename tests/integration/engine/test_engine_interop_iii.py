"""The official ``iii-sdk`` 0.25 client works against our engine (perf.md §5 needs it too)."""

from __future__ import annotations

import os

import pytest
from engine_raw import unique
from support.waiting import wait_for

from tests.support.official import shutdown_official

os.environ.setdefault("OTEL_ENABLED", "false")
iii = pytest.importorskip("iii")


def test_official_client_registers_and_calls_through_the_engine(engine):
    from iii import InitOptions, register_worker

    name = unique("official")
    fid = f"{unique('interop')}::greet"
    client = register_worker(engine.url, InitOptions(worker_name=name))
    try:
        client.register_function(
            fid, lambda data: {"hello": data["name"], "caller": "_caller_worker_id" in data}
        )

        def call() -> object:
            # Like the real engine, calls made before the worker's engine::workers::register (which
            # iii-sdk sends after the first registrations) find the function still buffered.
            try:
                return client.trigger({"function_id": fid, "payload": {"name": "Ada"}})
            except Exception as exc:
                assert getattr(exc, "code", None) == "function_not_found"
                return None

        assert wait_for(call, what="the function is live") == {"hello": "Ada", "caller": True}
        listed = client.trigger({"function_id": "engine::functions::list", "payload": {"prefix": fid}})
        assert listed == {"functions": [{"function_id": fid, "namespace": "default", "worker_name": name}]}
        with pytest.raises(Exception) as info:
            client.trigger({"function_id": f"{fid}-missing", "payload": {}, "timeout_ms": 5000})
        assert getattr(info.value, "code", None) == "function_not_found"
    finally:
        shutdown_official(client)


async def test_raw_caller_reaches_an_official_worker(engine, workers):
    from iii import InitOptions, register_worker

    fid = f"{unique('interop')}::double"
    client = register_worker(engine.url, InitOptions(worker_name=unique("official")))
    try:
        client.register_function(fid, lambda data: data["n"] * 2)
        caller = await workers(engine.url)

        async def registered():
            return "error" not in await caller.call(fid, {"n": 1})

        from support.waiting import wait_for_async

        await wait_for_async(registered, what="the official worker's function is live")
        assert await caller.result(fid, {"n": 21}) == 42
    finally:
        shutdown_official(client)
