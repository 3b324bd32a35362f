"""Worker resource gauges: CPU, memory, event-loop lag, uptime (protocol.md §7 ``WorkerMetrics``, §8.2).

The engine reads these gauges, matched by the attribute ``worker.id`` (the engine-assigned worker
id), into ``engine::workers::info.worker.latest_metrics``. The official Python SDK defines them but
never registers them; here they are reported when ``InitOptions.enable_metrics_reporting`` and
``OtelConfig.metrics_enabled`` are on.

==================================== ============================================== ======
gauge                                source                                         unit
==================================== ============================================== ======
``iii.worker.cpu.percent``           Δ(user + system CPU) / Δ wall time, in %        %
``iii.worker.cpu.user_micros``       ``os.times().user``                            µs
``iii.worker.cpu.system_micros``     ``os.times().system``                          µs
``iii.worker.memory.rss``            ``/proc/self/statm`` (else peak RSS)            By
``iii.worker.memory.heap_used``      glibc ``mallinfo2`` in-use bytes (if present)   By
``iii.worker.memory.heap_total``     glibc ``mallinfo2`` arena + mmapped bytes       By
``iii.worker.event_loop.lag_ms``     delay of a callback posted to the client loop  ms
``iii.worker.uptime_seconds``        time since the client was created              s
==================================== ============================================== ======

The process-wide values are sampled once per collection and shared by every client of the
process; lag and uptime are per client.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["GAUGES", "ProcessSample", "ProcessSampler"]

#: ``(gauge name, ProcessSample field or per-client key, unit, description)``.
GAUGES: Final = (
    ("iii.worker.cpu.percent", "cpu_percent", "%", "CPU use of the worker process"),
    ("iii.worker.cpu.user_micros", "cpu_user_micros", "us", "User CPU time of the worker process"),
    ("iii.worker.cpu.system_micros", "cpu_system_micros", "us", "System CPU time of the worker process"),
    ("iii.worker.memory.rss", "memory_rss", "By", "Resident set size of the worker process"),
    ("iii.worker.memory.heap_used", "memory_heap_used", "By", "Heap bytes in use (malloc)"),
    ("iii.worker.memory.heap_total", "memory_heap_total", "By", "Heap bytes obtained from the system"),
    ("iii.worker.event_loop.lag_ms", "event_loop_lag_ms", "ms", "Delay of a callback on the SDK loop"),
    ("iii.worker.uptime_seconds", "uptime_seconds", "s", "Time since the client started"),
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


@dataclass(frozen=True)
class ProcessSample:
    """Process-wide values of one collection (``None`` when unavailable on this platform)."""

    cpu_percent: float
    cpu_user_micros: int
    cpu_system_micros: int
    memory_rss: int | None
    memory_heap_used: int | None
    memory_heap_total: int | None
    monotonic: float


class ProcessSampler:
    """Samples the process's CPU and memory; CPU percent is relative to the previous sample."""

    _PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def __init__(self) -> None:
        self._mallinfo = _mallinfo2()
        times = os.times()
        self._last_cpu = times.user + times.system
        self._last_wall = time.monotonic()
        self._cached: ProcessSample | None = None

    def sample(self, max_age: float = 0.05) -> ProcessSample:
        """A sample, reusing the last one when it is younger than ``max_age`` seconds."""
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now - cached.monotonic < max_age:
            return cached
        times = os.times()
        cpu = times.user + times.system
        wall = now - self._last_wall
        percent = max(0.0, (cpu - self._last_cpu) / wall * 100) if wall > 0 else 0.0
        self._last_cpu, self._last_wall = cpu, now
        heap_used = heap_total = None
        if self._mallinfo is not None:
            info = self._mallinfo()
            heap_used = int(info.uordblks + info.hblkhd)
            heap_total = int(info.arena + info.hblkhd)
        sample = ProcessSample(
            cpu_percent=round(percent, 3),
            cpu_user_micros=int(times.user * 1_000_000),
            cpu_system_micros=int(times.system * 1_000_000),
            memory_rss=self._rss(),
            memory_heap_used=heap_used,
            memory_heap_total=heap_total,
            monotonic=now,
        )
        self._cached = sample
        return sample

    def _rss(self) -> int | None:
        try:
            with open("/proc/self/statm", "rb") as f:
                return int(f.read().split()[1]) * self._PAGE
        except (OSError, ValueError, IndexError):
            pass
        try:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        except (OSError, ValueError):
            return None
        return int(peak) * (1 if sys.platform == "darwin" else 1024)
