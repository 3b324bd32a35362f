"""Benchmark: messages per second through the dev engine's queue (``durable:subscriber``).

    .venv/bin/python bench/queue_bench.py [--messages 5000] [--concurrency 32] [--window 128] [--write]

For each storage mode (in memory, and SQLite under ``--data-dir``) an engine process is started;
one iii-typed worker subscribes an ``async def`` handler to a topic with ``durable:subscriber``
(``queue_config.concurrency`` = ``--concurrency``), another publishes ``--messages`` messages with
``iii::durable::publish``, keeping ``--window`` publishes in flight. The clock runs from the first
publish to the last message reaching the handler (every message is a store, a delivery over the
worker socket, a result and an acknowledgement). The same is measured for a named queue
(``TriggerAction.Enqueue``). Each message is checked to arrive exactly once. With ``--write`` the
table replaces the "Queue" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from iii_typed import InitOptions, TriggerAction, register_worker
from iii_typed.engine.process import EngineProcess

__all__ = ["main", "run_case"]

RESULTS = Path(__file__).with_name("RESULTS.md")
_BEGIN = "<!-- queue-bench:begin -->"
_END = "<!-- queue-bench:end -->"


async def _publish_all(
    iii: Any, count: int, window: int, mode: str, topic: str, target: str, offset: int
) -> float:
    semaphore = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with semaphore:
            if mode == "topic":
                await iii.trigger_async(
                    {"function_id": "iii::durable::publish", "payload": {"topic": topic, "data": {"i": i}}}
                )
            else:
                await iii.trigger_async(
                    {
                        "function_id": target,
                        "payload": {"i": i},
                        "action": TriggerAction.Enqueue(queue="bench"),
                    }
                )

    started = time.perf_counter()
    await asyncio.gather(*(one(offset + i) for i in range(count)))
    return time.perf_counter() - started


def run_case(
    mode: str, data_dir: Path | None, messages: int, concurrency: int, window: int
) -> dict[str, Any]:
    """One measurement; returns rates in messages per second."""
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "engine.toml"
        config.write_text(f"[queue.queue_configs.bench]\nconcurrency = {concurrency}\n", encoding="utf-8")
        with EngineProcess(config=config, data_dir=data_dir, env={"OTEL_ENABLED": "false"}) as engine:
            seen: dict[int, int] = {}
            lock = threading.Lock()
            done = threading.Event()
            expected = [0]

            async def handler(data: Any) -> None:
                with lock:
                    seen[data["i"]] = seen.get(data["i"], 0) + 1
                    if len(seen) >= expected[0]:
                        done.set()

            consumer = register_worker(engine.url, InitOptions(worker_name="bench-consumer"))
            producer = register_worker(engine.url, InitOptions(worker_name="bench-producer"))
            try:
                consumer.register_function("bench::consume", handler)
                if mode == "topic":
                    consumer.register_trigger(
                        {
                            "type": "durable:subscriber",
                            "function_id": "bench::consume",
                            "config": {"topic": "bench", "queue_config": {"concurrency": concurrency}},
                        }
                    )
                deadline = time.monotonic() + 10
                while True:  # the subscription is live once a probe message arrives
                    expected[0] = 1
                    asyncio.run(_publish_all(producer, 1, 1, mode, "bench", "bench::consume", -1))
                    if done.wait(0.5) or time.monotonic() > deadline:
                        break
                warm = min(500, messages)
                for offset, count in ((10_000_000, warm), (0, messages)):
                    with lock:
                        seen.clear()
                        done.clear()
                        expected[0] = count
                    started = time.perf_counter()
                    publish_time = asyncio.run(
                        _publish_all(producer, count, window, mode, "bench", "bench::consume", offset)
                    )
                    if not done.wait(120):
                        raise RuntimeError(f"only {len(seen)} of {count} messages arrived")
                    total = time.perf_counter() - started
                with lock:
                    duplicates = sum(1 for n in seen.values() if n > 1)
                return {
                    "mode": mode,
                    "storage": "SQLite (--data-dir)" if data_dir is not None else "memory",
                    "messages": messages,
                    "publish_rate": messages / publish_time,
                    "rate": messages / total,
                    "duplicates": duplicates,
                }
            finally:
                producer.shutdown()
                consumer.shutdown()


def _table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        _BEGIN,
        f"Command: `.venv/bin/python bench/queue_bench.py --messages {args.messages} "
        f"--concurrency {args.concurrency} --window {args.window} --write`",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
        f"1-minute load average at the end: {load:.2f}. Engine and both workers on this machine, "
        "iii-typed SDK, `async def` handler, OTel off.",
        "",
        "| path | storage | messages | accepted by the engine (msg/s) | end to end (msg/s) | duplicates |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        path = "`durable:subscriber` (publish)" if row["mode"] == "topic" else "named queue (`Enqueue`)"
        lines.append(
            f"| {path} | {row['storage']} | {row['messages']} | {row['publish_rate']:.0f} | "
            f"{row['rate']:.0f} | {row['duplicates']} |"
        )
    lines += [
        "",
        "Accepted = publish (or enqueue) calls answered per second. End to end = from the first publish "
        "to the last message reaching the handler; each message is stored, delivered over the worker "
        "socket and deleted when the handler's result arrives. Numbers vary with the machine's load.",
        _END,
    ]
    return "\n".join(lines)


def _write(section: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if _BEGIN in text and _END in text:
        text = re.sub(re.escape(_BEGIN) + r".*?" + re.escape(_END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Queue (`durable:subscriber` and named queues)\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print (and with ``--write`` record) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("OTEL_ENABLED", "false")
    rows = []
    for mode in ("topic", "queue"):
        for persistent in (False, True):
            with tempfile.TemporaryDirectory() as data:
                row = run_case(
                    mode, Path(data) if persistent else None, args.messages, args.concurrency, args.window
                )
            rows.append(row)
            print(
                f"{mode:5} {row['storage']:20} accepted {row['publish_rate']:8.0f} msg/s, "
                f"end to end {row['rate']:8.0f} msg/s, duplicates {row['duplicates']}",
                file=sys.stderr,
            )
    section = _table(rows, args)
    print(section)
    if args.write:
        _write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
