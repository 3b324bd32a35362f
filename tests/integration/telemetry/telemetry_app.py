"""A worker process for the telemetry tests (OpenTelemetry providers are process-global, so every
worker with telemetry on runs in a process of its own).

    python tests/integration/telemetry/telemetry_app.py '<json config>'

Config keys: ``url``, ``sdk`` (``typed`` = iii-typed, ``official`` = iii-sdk 0.25), ``worker_name``,
``otel`` (OtelConfig fields), ``options`` (other InitOptions fields, iii-typed only), ``service``
(Logger service name), ``functions`` (list of ``{id, mode: sync|async, log?: [level, message,
data], call?: function id, request?: a trigger request sent as is (e.g. with an ``action``),
fail?: message, spawn?: bool, cancel?: bool, sleep_ms?: int}``; sync
ones also ``child?: bool`` (an application span under the handler's) and ``fetch?: url``
(``urllib`` request)), ``counter`` (record a user counter metric); the environment is the parent's.

Protocol on stdout: one JSON object per line. ``{"event": "ready", "worker_id", "pid"}`` once the
worker is connected and registered; then one answer per command read on stdin:

* ``stats`` → telemetry counters, RSS, thread names, ``detach_errors`` (records of the
  ``opentelemetry.context`` logger at ERROR), ``loop_span_valid`` (whether a span is current on
  the SDK loop outside handlers), ``fallback`` (records of ``iii_typed.logger``), ``otel_imported``;
* ``logs`` → emits one record per level outside any span (``Logger`` of ``service``);
* ``burst <n>`` → emits ``n`` info records as fast as possible;
* ``stream on|off`` → a thread emitting records continuously;
* ``flush`` → ``iii_typed.telemetry.flush()``;
* ``stop`` → shuts the client down and reports the threads left, then exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from typing import Any

CONFIG: dict[str, Any] = json.loads(sys.argv[1])


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


DETACH = _Capture()
DETACH.setLevel(logging.ERROR)
logging.getLogger("opentelemetry.context").addHandler(DETACH)
FALLBACK = _Capture()
fallback_logger = logging.getLogger("iii_typed.logger")
fallback_logger.addHandler(FALLBACK)
fallback_logger.setLevel(logging.DEBUG)


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()


def rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build_typed() -> tuple[Any, Any, Any]:
    from iii_typed import InitOptions, Logger, ReconnectionConfig, register_worker

    options = dict(CONFIG.get("options", {}))
    options.setdefault("reconnection_config", ReconnectionConfig(initial_delay_ms=50, max_delay_ms=200))
    options.setdefault("keepalive_interval_ms", 500)
    options.setdefault("keepalive_timeout_ms", 500)
    otel = CONFIG.get("otel")
    if otel is not None:
        options["otel"] = otel
    client = register_worker(CONFIG["url"], InitOptions(worker_name=CONFIG["worker_name"], **options))
    return client, Logger(CONFIG.get("service")), client.trigger_async


def build_official() -> tuple[Any, Any, Any]:
    from iii import InitOptions, register_worker
    from iii_helpers.observability import Logger

    client = register_worker(
        CONFIG["url"], InitOptions(worker_name=CONFIG["worker_name"], otel=CONFIG.get("otel"))
    )
    return client, Logger(service_name=CONFIG.get("service")), client.trigger_async


def make_handler(spec: dict[str, Any], client: Any, logger: Any, call_async: Any) -> Any:
    level_message_data = spec.get("log")

    def log_it() -> None:
        if level_message_data:
            level, message, data = level_message_data
            getattr(logger, level)(message, data)

    def request(data: Any) -> dict[str, Any]:
        return {"function_id": spec["call"], "payload": {"from": spec["id"], "data": data}}

    if spec.get("mode") == "async":

        async def handler(data: Any) -> Any:
            log_it()
            if spec.get("sleep_ms"):
                await asyncio.sleep(spec["sleep_ms"] / 1000)
            if spec.get("spawn"):

                async def pump() -> None:
                    for _ in range(3):
                        await asyncio.sleep(0)

                asyncio.create_task(pump())  # noqa: RUF006 - fire and forget, as users do
            if spec.get("cancel"):
                current = asyncio.current_task()
                assert current is not None
                current.cancel()
                await asyncio.Event().wait()  # never set: the cancellation lands here
            if spec.get("fail"):
                raise ValueError(spec["fail"])
            if spec.get("call"):
                return await call_async(request(data))
            if spec.get("request"):
                await call_async(spec["request"])
            return {"ok": spec["id"]}

        return handler

    def sync_handler(data: Any) -> Any:
        log_it()
        if spec.get("child"):
            from opentelemetry import trace

            trace.get_current_span().set_attribute("app.marker", spec["id"])
            with trace.get_tracer("telemetry-app").start_as_current_span("child work") as child:
                child.set_attribute("app.step", 1)
                logger.info("in child", None)
        if spec.get("fetch"):
            import urllib.error
            import urllib.request

            try:
                urllib.request.urlopen(spec["fetch"], timeout=5).read()
            except urllib.error.HTTPError as exc:
                return {"status": exc.code}
        if spec.get("fail"):
            raise ValueError(spec["fail"])
        if spec.get("call"):
            return client.trigger(request(data))
        if spec.get("request"):
            client.trigger(spec["request"])
        return {"ok": spec["id"]}

    return sync_handler


def loop_span_valid(client: Any) -> bool | None:
    loop = getattr(getattr(client, "_loop", None), "loop", None)
    if loop is None:
        return None
    from opentelemetry import trace

    result: list[bool] = []
    done = threading.Event()

    def probe() -> None:
        result.append(trace.get_current_span().get_span_context().is_valid)
        done.set()

    loop.call_soon_threadsafe(probe)
    done.wait(5)
    return result[0] if result else None


def main() -> None:
    sdk = CONFIG.get("sdk", "typed")
    client, logger, call_async = build_typed() if sdk == "typed" else build_official()
    for spec in CONFIG.get("functions", []):
        client.register_function(spec["id"], make_handler(spec, client, logger, call_async))
    if CONFIG.get("counter"):
        from opentelemetry import metrics

        counter = metrics.get_meter("telemetry-app").create_counter("app.requests", unit="1")
        counter.add(3, {"route": "/x"})
    # a round trip so the registrations above are processed before "ready"
    client.trigger({"function_id": "engine::health::check", "payload": {}})
    emit({"event": "ready", "worker_id": getattr(client, "worker_id", None), "pid": os.getpid()})
    stop_streaming: threading.Event | None = None  # the running stream thread's stop signal

    def stream(stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            logger.info("stream", {"n": n})
            n += 1
            # every 50 records, let other threads run (and leave at once when stopped)
            if n % 50 == 0 and stop.wait(0.001):
                return

    def lingering() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith(("iii-", "Otel"))]

    for raw in sys.stdin:
        command = raw.split()
        if not command:
            continue
        if command[0] == "stats":
            from iii_typed import telemetry

            emit(
                {
                    "event": "stats",
                    "telemetry": telemetry.stats(),
                    "rss": rss(),
                    "threads": sorted(t.name for t in threading.enumerate()),
                    "detach_errors": len(DETACH.records),
                    "loop_span_valid": loop_span_valid(client) if sdk == "typed" else None,
                    "fallback": [
                        {"level": r.levelname, "message": r.getMessage(), "data": getattr(r, "data", None)}
                        for r in FALLBACK.records
                    ],
                    "otel_imported": "opentelemetry.sdk.trace" in sys.modules,
                }
            )
        elif command[0] == "logs":
            logger.debug("debug record", {"level": "debug", "n": 1})
            logger.info("info record", {"level": "info", "n": 2})
            logger.warn("warn record", {"level": "warn", "n": 3})
            logger.error("error record", {"level": "error", "n": 4})
            emit({"event": "logs", "at_ms": int(time.time() * 1000)})
        elif command[0] == "burst":
            for n in range(int(command[1])):
                logger.info("burst", {"n": n})
            emit({"event": "burst"})
        elif command[0] == "stream":
            if command[1] == "on" and stop_streaming is None:
                stop_streaming = threading.Event()
                streamer = threading.Thread(target=stream, args=(stop_streaming,), name="app-stream")
                streamer.daemon = True
                streamer.start()
            elif command[1] == "off" and stop_streaming is not None:
                stop_streaming.set()
                stop_streaming = None
            emit({"event": "stream"})
        elif command[0] == "flush":
            from iii_typed import telemetry

            emit({"event": "flush", "ok": telemetry.flush(5)})
        elif command[0] == "stop":
            if stop_streaming is not None:
                stop_streaming.set()
            client.shutdown()
            deadline = time.monotonic() + 5  # bounded wait for the SDK's threads to end
            while (left := lingering()) and (remaining := deadline - time.monotonic()) > 0:
                left[0].join(remaining)
            emit({"event": "stopped", "threads": sorted(t.name for t in threading.enumerate())})
            return


if __name__ == "__main__":
    main()
