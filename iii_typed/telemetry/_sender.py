"""The ``/otel`` socket: its own thread, its own reconnect loop, bounded queues that drop (§8.1).

:class:`OtelSender` owns one event loop on a daemon thread named ``iii-otel-N``. Span and log
processors hand it finished items from any thread (:meth:`OtelSender.offer_span`,
:meth:`OtelSender.offer_log` — a bounded ``deque.append``, nothing else on the caller's path).
On its own thread, every ``spans_flush_interval_ms`` / ``logs_flush_interval_ms`` it encodes what
was buffered into frames (:mod:`._encode`) and every ``metrics_export_interval_ms`` it collects
metrics; frames wait in a FIFO bounded by :data:`MAX_QUEUED_FRAMES` frames and
:data:`MAX_QUEUED_BYTES` bytes and are written to the socket in order while it is open.

Nothing ever blocks a producer: when a buffer or the frame queue is full the newest item is
dropped and counted (:meth:`OtelSender.stats`), with one WARNING per outage. Memory therefore
stays bounded however long the engine is away.

Reconnection follows the worker's :class:`~iii_typed.ReconnectionConfig` (1 s doubling to 30 s,
±30 % jitter by default) but never gives up; the attempt counter resets after each successful
connection. The socket sends the worker's handshake headers and never registers as a worker.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .._loop import LoopThread
from ..options import ReconnectionConfig
from ._encode import LOGS_PREFIX, METRICS_PREFIX, SPANS_PREFIX, encode_logs, encode_spans

__all__ = [
    "MAX_BUFFERED_ITEMS",
    "MAX_QUEUED_BYTES",
    "MAX_QUEUED_FRAMES",
    "MAX_SPANS_PER_FRAME",
    "OtelSender",
]

log = logging.getLogger("iii_typed.telemetry")

#: Frames kept while the socket is down (the official SDK's bound, protocol.md §8.1).
MAX_QUEUED_FRAMES: Final = 1000
#: Bytes kept in queued frames at most.
MAX_QUEUED_BYTES: Final = 16 * 1024 * 1024
#: Spans (and, separately, log records) buffered between two flushes at most.
MAX_BUFFERED_ITEMS: Final = 8192
#: Spans encoded into one ``OTLP`` frame at most.
MAX_SPANS_PER_FRAME: Final = 512
_OPEN_TIMEOUT_S: Final = 10.0


class OtelSender:
    """Ships telemetry frames to the engine's ``/otel`` route (see the module docstring).

    Args:
        url: The ``/otel`` WebSocket URL.
        headers: Handshake headers.
        reconnection: Backoff policy (``max_retries`` is ignored: telemetry retries forever).
        spans_flush_ms: Span flush interval, ms.
        logs_flush_ms: Log flush interval, ms.
        logs_batch_size: Log records per ``LOGS`` frame.
        metrics_interval_ms: Metrics collection interval, ms (``None``: no metrics).
        collect_metrics: Returns one encoded ``MTRC`` payload, or ``None`` when there is nothing.
        resource: Resource of the handler spans (:class:`~._span.HandlerSpan`).
        scope: Instrumentation scope of the handler spans.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        reconnection: ReconnectionConfig,
        *,
        spans_flush_ms: int,
        logs_flush_ms: int,
        logs_batch_size: int,
        metrics_interval_ms: int | None,
        collect_metrics: Callable[[], bytes | None] | None,
        resource: Any = None,
        scope: Any = None,
    ) -> None:
        self.url = url
        self._headers = dict(headers)
        self._reconnection = reconnection
        self._spans_flush = spans_flush_ms / 1000
        self._logs_flush = logs_flush_ms / 1000
        self._logs_batch = max(1, logs_batch_size)
        self._metrics_interval = metrics_interval_ms / 1000 if metrics_interval_ms else None
        self._collect_metrics = collect_metrics
        self._resource = resource
        self._scope = scope
        self._spans: collections.deque[Any] = collections.deque()
        self._logs: collections.deque[Any] = collections.deque()
        self._frames: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._counters = {
            "spans_dropped": 0,
            "logs_dropped": 0,
            "frames_dropped": 0,
            "frames_sent": 0,
            "bytes_sent": 0,
            "spans_sent": 0,
            "logs_sent": 0,
            "metrics_sent": 0,
            "connects": 0,
            "encode_errors": 0,
        }
        self._warned_full = False
        self.connected = False
        self._stopping = False
        self._ws: ClientConnection | None = None
        self._thread = LoopThread("iii-otel")
        self._loop = self._thread.loop
        self._wake: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        ready = self._thread.submit(self._start())
        ready.result(5)

    # -- producers (any thread) --------------------------------------------------------------
    def offer_span(self, span: Any) -> None:
        """Buffer a finished span (drops and counts it when the buffer is full)."""
        if len(self._spans) >= MAX_BUFFERED_ITEMS or self._stopping:
            self._counters["spans_dropped"] += 1
            return
        self._spans.append(span)

    def offer_log(self, record: Any) -> None:
        """Buffer a log record (drops and counts it when the buffer is full)."""
        if len(self._logs) >= MAX_BUFFERED_ITEMS or self._stopping:
            self._counters["logs_dropped"] += 1
            return
        self._logs.append(record)

    def request_metrics(self) -> None:
        """Collect and send metrics now (e.g. right after the worker registered)."""
        if self._collect_metrics is None or self._stopping:
            return
        try:
            self._loop.call_soon_threadsafe(self._metrics_now)
        except RuntimeError:
            pass

    def flush(self, timeout: float = 2.0) -> bool:
        """Encode what is buffered and wait until every queued frame is written (while connected).

        Returns:
            ``True`` when nothing is left queued within ``timeout`` seconds.
        """
        if self._stopping:
            return False
        try:
            return bool(self._thread.submit(self._flush_all(timeout)).result(timeout + 1))
        except Exception:
            return False

    async def _flush_all(self, timeout: float) -> bool:
        self._flush_spans()
        self._flush_logs()
        await self._wait_drained(timeout)
        return not self._frames

    async def _wait_drained(self, timeout: float) -> None:
        drained = self._drained
        if drained is None or not self._frames:
            return
        try:
            await asyncio.wait_for(drained.wait(), timeout)
        except TimeoutError:
            pass

    def stats(self) -> dict[str, Any]:
        """Counters: items and frames sent and dropped, connects, what is queued now."""
        out: dict[str, Any] = dict(self._counters)
        out.update(
            connected=self.connected,
            url=self.url,
            queued_frames=len(self._frames),
            queued_bytes=self._queued_bytes,
            buffered_spans=len(self._spans),
            buffered_logs=len(self._logs),
        )
        return out

    # -- lifecycle -----------------------------------------------------------------------------
    async def _start(self) -> None:
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run_socket(), name="iii-otel-socket"),
            loop.create_task(self._periodic(self._spans_flush, self._flush_spans), name="iii-otel-spans"),
            loop.create_task(self._periodic(self._logs_flush, self._flush_logs), name="iii-otel-logs"),
        ]
        if self._metrics_interval is not None and self._collect_metrics is not None:
            self._tasks.append(
                loop.create_task(
                    self._periodic(self._metrics_interval, self._metrics_now), name="iii-otel-mtrc"
                )
            )

    def stop(self, flush_timeout: float = 1.0) -> None:
        """Flush what is buffered (waiting up to ``flush_timeout`` s while connected), close the
        socket and end the thread. Idempotent; not from the sender's own thread."""
        if self._stopping:
            return
        try:
            future = self._thread.submit(self._shutdown(flush_timeout))
            future.result(flush_timeout + 3)
        except Exception:
            log.debug("telemetry sender shutdown", exc_info=True)
        self._stopping = True
        self._thread.stop()

    async def _shutdown(self, flush_timeout: float) -> None:
        self._flush_spans()
        self._flush_logs()
        self._stopping = True
        if self.connected:
            await self._wait_drained(flush_timeout)
        # Take the socket before cancelling its task: the task's cleanup forgets it (``_ws = None``),
        # and a socket nobody closes is left to the loop's teardown (a ResourceWarning).
        ws = self._ws
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(1000, "telemetry shutdown"), 1.0)
            except Exception:
                pass
            finally:
                ws.transport.abort()  # no-op once closed; never leaves the transport open
        self.connected = False

    # -- encoding (sender thread) --------------------------------------------------------------
    async def _periodic(self, interval: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval)
            action()

    def _flush_spans(self) -> None:
        spans = self._spans
        while spans:
            batch: list[Any] = []
            while spans and len(batch) < MAX_SPANS_PER_FRAME:
                batch.append(spans.popleft())
            try:
                payload = encode_spans(batch, self._resource, self._scope)
            except Exception:
                self._counters["encode_errors"] += 1
                log.exception("could not encode %d spans; dropped", len(batch))
                continue
            if self._enqueue(SPANS_PREFIX + payload):
                self._counters["spans_sent"] += len(batch)
            else:
                self._counters["spans_dropped"] += len(batch)

    def _flush_logs(self) -> None:
        records = self._logs
        while records:
            batch: list[Any] = []
            while records and len(batch) < self._logs_batch:
                batch.append(records.popleft())
            try:
                payload = encode_logs(batch)
            except Exception:
                self._counters["encode_errors"] += 1
                log.exception("could not encode %d log records; dropped", len(batch))
                continue
            if self._enqueue(LOGS_PREFIX + payload):
                self._counters["logs_sent"] += len(batch)
            else:
                self._counters["logs_dropped"] += len(batch)

    def _metrics_now(self) -> None:
        collect = self._collect_metrics
        if collect is None:
            return
        try:
            payload = collect()
        except Exception:
            self._counters["encode_errors"] += 1
            log.exception("could not collect metrics")
            return
        if payload is not None and self._enqueue(METRICS_PREFIX + payload):
            self._counters["metrics_sent"] += 1

    def _enqueue(self, frame: bytes) -> bool:
        if len(self._frames) >= MAX_QUEUED_FRAMES or self._queued_bytes + len(frame) > MAX_QUEUED_BYTES:
            self._counters["frames_dropped"] += 1
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "telemetry queue full (%d frames, %d bytes) while %s is unreachable: dropping "
                    "telemetry until it reconnects",
                    len(self._frames),
                    self._queued_bytes,
                    self.url,
                )
            return False
        self._frames.append(frame)
        self._queued_bytes += len(frame)
        if self._drained is not None:
            self._drained.clear()
        wake = self._wake
        if wake is not None:
            wake.set()
        return True

    # -- socket (sender thread) ----------------------------------------------------------------
    async def _run_socket(self) -> None:
        retry = 0
        while True:
            try:
                ws = await connect(
                    self.url,
                    additional_headers=self._headers,
                    compression=None,
                    open_timeout=_OPEN_TIMEOUT_S,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=1,
                    proxy=None,
                    user_agent_header=None,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("telemetry socket %s: connect failed: %s", self.url, exc)
            else:
                retry = 0
                self._ws = ws
                self.connected = True
                self._warned_full = False
                self._counters["connects"] += 1
                log.debug("telemetry socket connected to %s", self.url)
                try:
                    await self._pump(ws)
                except ConnectionClosed as exc:
                    log.info("telemetry socket to %s closed (%s); reconnecting", self.url, exc)
                finally:
                    self.connected = False
                    self._ws = None
            delay = self._reconnection.delay_ms(min(retry, 30)) / 1000
            retry += 1
            await asyncio.sleep(delay)

    async def _pump(self, ws: ClientConnection) -> None:
        wake = self._wake
        assert wake is not None
        closed = asyncio.get_running_loop().create_task(self._watch_close(ws))
        try:
            while True:
                frames = self._frames
                while frames:
                    frame = frames[0]
                    await ws.send(frame)  # binary: bytes are sent as a binary frame
                    if frames and frames[0] is frame:
                        frames.popleft()
                        self._queued_bytes -= len(frame)
                        self._counters["frames_sent"] += 1
                        self._counters["bytes_sent"] += len(frame)
                if self._drained is not None:
                    self._drained.set()
                if closed.done():
                    raise ConnectionClosed(None, None)
                wake.clear()
                waiter = asyncio.get_running_loop().create_task(wake.wait())
                done, _ = await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                if closed in done:
                    raise ConnectionClosed(None, None)
        finally:
            closed.cancel()

    @staticmethod
    async def _watch_close(ws: ClientConnection) -> None:
        try:
            async for _ in ws:
                pass  # the engine sends nothing on /otel; text frames would be ignored anyway
        except ConnectionClosed:
            pass
