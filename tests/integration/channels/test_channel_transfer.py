"""100 MiB through one channel between two worker processes, each direction between our SDK and
the official ``iii-sdk`` (protocol.md §5; issue 5 acceptance).

The orchestrating client (our SDK, in the test process) creates the channel and hands the writer
ref to the producer and the reader ref to the consumer. Asserted: the consumer's SHA-256 equals
the producer's (byte-exact), every text message arrives in order at the byte offset it was sent
at, and the consuming process's peak RSS grows by less than 50 MiB (constant memory).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from iii_typed import III
from iii_typed.engine.process import EngineProcess
from tests.integration.channels.channel_support import channel_rows, client, peer
from tests.support.waiting import wait_for

pytest.importorskip("iii")

TOTAL = 100 * 1024 * 1024
CHUNK = 64 * 1024
EVERY = 97  # a text message before every 97th chunk (not aligned with anything)
RSS_BOUND_KB = 50 * 1024


async def _transfer(iii: III, producer: str, consumer: str, seed: int) -> tuple[str, Any, Any]:
    channel = await iii.create_channel_async()
    produce = iii.trigger_async(
        {
            "function_id": f"{producer}::produce",
            "payload": {
                "out": channel.writer_ref,
                "seed": seed,
                "total": TOTAL,
                "chunk": CHUNK,
                "every": EVERY,
            },
            "timeout_ms": 150_000,
        }
    )
    consume = iii.trigger_async(
        {"function_id": f"{consumer}::consume", "payload": {"inp": channel.reader_ref}, "timeout_ms": 150_000}
    )
    produced, consumed = await asyncio.gather(produce, consume)
    return channel.channel_id, produced, consumed


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("producer_sdk", "consumer_sdk"),
    [("ours", "official"), ("official", "ours")],
    ids=["ours-to-official", "official-to-ours"],
)
def test_100_mib_byte_exact_in_order_constant_memory(
    engine: EngineProcess, producer_sdk: str, consumer_sdk: str
) -> None:
    with (
        client(engine.url) as iii,
        peer(engine.url, producer_sdk, iii) as producer,
        peer(engine.url, consumer_sdk, iii) as consumer,
    ):
        channel_id, produced, consumed = asyncio.run(
            _transfer(iii, producer, consumer, seed=len(producer_sdk))
        )

        assert produced["bytes"] == TOTAL
        assert consumed["bytes"] == TOTAL
        assert consumed["sha256"] == produced["sha256"]

        expected = [[f"m:{n}:{n * EVERY * CHUNK}", n * EVERY * CHUNK] for n in range(produced["messages"])]
        assert produced["messages"] == -(-TOTAL // CHUNK // EVERY)
        assert consumed["messages"] == expected

        print(f"consumer peak RSS growth: {consumed['rss_growth_kb']} KiB")
        assert consumed["rss_growth_kb"] < RSS_BOUND_KB, consumed["rss_growth_kb"]
        # Both sides are done: the engine forgets the channel.
        wait_for(lambda: channel_id not in channel_rows(iii), timeout=5, what="the channel is forgotten")
