"""A producer/consumer worker process for the channel transfer tests (not a test module).

Usage: ``python peer.py ENGINE_URL ours|official PREFIX`` registers ``PREFIX::produce`` and
``PREFIX::consume`` with the chosen SDK, prints ``ready`` and serves until stdin closes.

* ``produce {"out": writer, "seed", "total", "chunk", "every"}`` writes ``total`` pseudo-random
  bytes (``random.Random(seed)``) in ``chunk``-byte writes and, before every ``every``-th chunk,
  the text message ``"m:<n>:<offset>"``; then closes. Returns ``{"sha256", "bytes", "messages"}``.
* ``consume {"inp": reader}`` reads the stream chunk by chunk, hashing as it goes, and records
  each text message with the byte offset reached when it arrived. Returns ``{"sha256", "bytes",
  "messages": [[text, offset], ...], "rss_growth_kb"}``: the growth of the process's peak RSS
  while consuming (the peak is reset with ``/proc/self/clear_refs`` when allowed).

Our SDK's handlers are sync (blocking ``write`` / ``for chunk in reader``); the official SDK's
are async (its channel API is async only).
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import sys
from typing import Any

os.environ.setdefault("OTEL_ENABLED", "false")


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class Meter:
    """Peak RSS growth of this process between ``start`` and ``growth``."""

    def start(self) -> None:
        self.reset = _reset_peak()
        self.base = _status_kb("VmRSS") if self.reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def growth(self) -> int:
        peak = _status_kb("VmHWM") if self.reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, peak - self.base)


def chunks(seed: int, total: int, chunk: int) -> Any:
    rnd = random.Random(seed)
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield rnd.randbytes(size)
        sent += size


def main() -> None:
    url, sdk, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    if sdk == "ours":
        from iii_typed import InitOptions, register_worker

        worker: Any = register_worker(url, InitOptions(worker_name=f"{prefix}-{os.getpid()}"))

        def produce(data: dict[str, Any]) -> dict[str, Any]:
            out = data["out"]
            digest = hashlib.sha256()
            offset = messages = 0
            for index, piece in enumerate(chunks(data["seed"], data["total"], data["chunk"])):
                if index % data["every"] == 0:
                    out.send_message(f"m:{messages}:{offset}")
                    messages += 1
                out.write(piece)
                digest.update(piece)
                offset += len(piece)
            out.close()
            return {"sha256": digest.hexdigest(), "bytes": offset, "messages": messages}

        def consume(data: dict[str, Any]) -> dict[str, Any]:
            reader = data["inp"]
            meter = Meter()
            meter.start()
            digest = hashlib.sha256()
            state = {"offset": 0}
            seen: list[list[Any]] = []
            reader.on_message(lambda text: seen.append([text, state["offset"]]))
            for piece in reader:
                digest.update(piece)
                state["offset"] += len(piece)
            return {
                "sha256": digest.hexdigest(),
                "bytes": state["offset"],
                "messages": seen,
                "rss_growth_kb": meter.growth(),
            }

    else:
        from iii import InitOptions as OfficialOptions
        from iii import register_worker as official_register

        worker = official_register(url, OfficialOptions(worker_name=f"{prefix}-{os.getpid()}"))

        async def produce(data: dict[str, Any]) -> dict[str, Any]:
            out = data["out"]
            digest = hashlib.sha256()
            offset = messages = 0
            for index, piece in enumerate(chunks(data["seed"], data["total"], data["chunk"])):
                if index % data["every"] == 0:
                    await out.send_message_async(f"m:{messages}:{offset}")
                    messages += 1
                await out.write(piece)
                digest.update(piece)
                offset += len(piece)
            await out.close_async()
            return {"sha256": digest.hexdigest(), "bytes": offset, "messages": messages}

        async def consume(data: dict[str, Any]) -> dict[str, Any]:
            reader = data["inp"]
            meter = Meter()
            meter.start()
            digest = hashlib.sha256()
            state = {"offset": 0}
            seen: list[list[Any]] = []
            reader.on_message(lambda text: seen.append([text, state["offset"]]))
            async for piece in reader:
                digest.update(piece)
                state["offset"] += len(piece)
            return {
                "sha256": digest.hexdigest(),
                "bytes": state["offset"],
                "messages": seen,
                "rss_growth_kb": meter.growth(),
            }

    worker.register_function(f"{prefix}::produce", produce)
    worker.register_function(f"{prefix}::consume", consume)
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        worker.shutdown()


if __name__ == "__main__":
    main()
