"""Bounded storage of spans, logs and metric points, and their queries (protocol.md §7).

Each kind lives in a ring buffer of at most its configured size: when full, the oldest entry is
evicted (and counted). Spans are also indexed by trace id for ``engine::traces::tree``. With
persistence on, spans and logs are written through to SQLite (``<data_dir>/observability.sqlite3``)
and the newest ones are loaded back at start-up; the file never holds more than the configured
maxima (older rows are pruned).

Queries (``engine::traces::list``, ``engine::logs::list``, ``engine::metrics::list``) scan the
buffers; with the default maxima (10 000 each) a query takes a few milliseconds.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ._otel_parse import ParsedSpan, severity_level
from ._sqlite import dumps, loads, open_database

__all__ = [
    "WORKER_METRICS_LOOKBACK_MS",
    "WORKER_METRIC_FIELDS",
    "LogStore",
    "MetricStore",
    "Persistence",
    "SpanStore",
]

log = logging.getLogger("iii_typed.engine.observability")

#: Gauge name → ``WorkerMetrics`` field (protocol.md §7, §8.2).
WORKER_METRIC_FIELDS: Final = {
    "iii.worker.memory.heap_used": "memory_heap_used",
    "iii.worker.memory.heap_total": "memory_heap_total",
    "iii.worker.memory.rss": "memory_rss",
    "iii.worker.memory.external": "memory_external",
    "iii.worker.cpu.percent": "cpu_percent",
    "iii.worker.cpu.user_micros": "cpu_user_micros",
    "iii.worker.cpu.system_micros": "cpu_system_micros",
    "iii.worker.event_loop.lag_ms": "event_loop_lag_ms",
    "iii.worker.uptime_seconds": "uptime_seconds",
}
#: ``latest_metrics`` older than this are not shown (the real engine's 2-minute lookback).
WORKER_METRICS_LOOKBACK_MS: Final = 120_000


def _ms_to_ns(value: int | None) -> int | None:
    return None if value is None else int(value) * 1_000_000


def _attr_matches(attributes: Mapping[str, Any], key: Any, value: Any) -> bool:
    if key not in attributes:
        return False
    actual = attributes[key]
    return actual == value or str(actual) == str(value)


class Persistence:
    """Write-through SQLite copy of spans and logs (optional; see the module docstring).

    Args:
        data_dir: The engine's data folder.
        max_spans: Rows kept in ``spans``.
        max_logs: Rows kept in ``logs``.
    """

    _PRUNE_EVERY: Final = 512

    def __init__(self, data_dir: Path, max_spans: int, max_logs: int) -> None:
        self.path = data_dir / "observability.sqlite3"
        self._db = open_database(
            data_dir,
            "observability",
            (
                "CREATE TABLE IF NOT EXISTS spans (id INTEGER PRIMARY KEY, kind INTEGER, body TEXT)",
                "CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY, body TEXT)",
            ),
        )
        self._max = {"spans": max_spans, "logs": max_logs}
        self._since_prune = {"spans": 0, "logs": 0}
        self.last_error: str | None = None

    def load_spans(self) -> list[tuple[int, dict[str, Any]]]:
        """The newest stored spans, oldest first: ``(kind, StoredSpan)``."""
        rows = self._db.execute(
            "SELECT kind, body FROM spans ORDER BY id DESC LIMIT ?", (self._max["spans"],)
        ).fetchall()
        return [(int(kind), loads(body)) for kind, body in reversed(rows)]

    def load_logs(self) -> list[dict[str, Any]]:
        """The newest stored logs, oldest first."""
        rows = self._db.execute(
            "SELECT body FROM logs ORDER BY id DESC LIMIT ?", (self._max["logs"],)
        ).fetchall()
        return [loads(body) for (body,) in reversed(rows)]

    def add_spans(self, spans: Sequence[ParsedSpan]) -> None:
        """Append spans (one transaction)."""
        self._write(
            "spans",
            "INSERT INTO spans (kind, body) VALUES (?, ?)",
            [(s.kind, dumps(s.record)) for s in spans],
        )

    def add_logs(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append log records (one transaction)."""
        self._write("logs", "INSERT INTO logs (body) VALUES (?)", [(dumps(r),) for r in records])

    def clear(self, table: str) -> None:
        """Delete every row of ``spans`` or ``logs``."""
        self._write(table, f"DELETE FROM {table}", None)

    def _write(self, table: str, sql: str, rows: list[tuple[Any, ...]] | None) -> None:
        try:
            if rows is None:
                self._db.execute(sql)
            else:
                self._db.executemany(sql, rows)
                self._since_prune[table] += len(rows)
                if self._since_prune[table] >= self._PRUNE_EVERY:
                    self._since_prune[table] = 0
                    self._db.execute(
                        f"DELETE FROM {table} WHERE id <= (SELECT MAX(id) FROM {table}) - ?",
                        (self._max[table],),
                    )
            self._db.commit()
            self.last_error = None
        except sqlite3.Error as exc:
            self.last_error = str(exc)
            log.warning("observability persistence: %s", exc)

    def size_bytes(self) -> int:
        """Bytes used by the database file (and its WAL)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += Path(f"{self.path}{suffix}").stat().st_size
            except OSError:
                pass
        return total

    def close(self) -> None:
        """Close the database."""
        try:
            self._db.close()
        except sqlite3.Error:
            pass


class SpanStore:
    """Spans in a ring buffer, indexed by trace id.

    Args:
        max_spans: Capacity; the oldest span is evicted beyond it.
    """

    def __init__(self, max_spans: int) -> None:
        self.max_spans = max_spans
        self._ring: collections.deque[ParsedSpan] = collections.deque()
        self._traces: dict[str, list[ParsedSpan]] = {}
        self.evicted = 0
        self.hot_bytes = 0

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, span: ParsedSpan) -> None:
        """Store one span (evicting the oldest when full)."""
        ring = self._ring
        if len(ring) >= self.max_spans:
            old = ring.popleft()
            self.evicted += 1
            self.hot_bytes -= old.size
            siblings = self._traces.get(old.trace_id)
            if siblings is not None:
                try:
                    siblings.remove(old)
                except ValueError:
                    pass
                if not siblings:
                    del self._traces[old.trace_id]
        ring.append(span)
        self.hot_bytes += span.size
        self._traces.setdefault(span.trace_id, []).append(span)

    def clear(self) -> int:
        """Remove every span; returns how many there were."""
        count = len(self._ring)
        self._ring.clear()
        self._traces.clear()
        self.hot_bytes = 0
        return count

    def __iter__(self) -> Iterator[ParsedSpan]:
        return iter(list(self._ring))

    def trace(self, trace_id: str) -> list[ParsedSpan]:
        """The stored spans of one trace, in arrival order."""
        return list(self._traces.get(trace_id, ()))

    def query(self, q: Mapping[str, Any]) -> tuple[int, list[dict[str, Any]]]:
        """``engine::traces::list`` filtering, sorting and paging (see ``TracesListInput``).

        Returns:
            ``(total matching, page of StoredSpan records)``.
        """
        trace_ids: set[str] | None = None
        if q.get("trace_id"):
            trace_ids = {q["trace_id"]}
        if q.get("trace_ids") is not None:
            trace_ids = (trace_ids or set()) | set(q["trace_ids"])
        source: Iterable[ParsedSpan]
        if trace_ids is not None:
            source = [s for tid in trace_ids for s in self._traces.get(tid, ())]
        else:
            source = self._ring
        service = q.get("service_name")
        name = q.get("name")
        name_l = name.lower() if isinstance(name, str) else None
        status = q.get("status")
        status_l = status.lower() if isinstance(status, str) else None
        min_ns = None if q.get("min_duration_ms") is None else float(q["min_duration_ms"]) * 1e6
        max_ns = None if q.get("max_duration_ms") is None else float(q["max_duration_ms"]) * 1e6
        start_ns = _ms_to_ns(q.get("start_time"))
        end_ns = _ms_to_ns(q.get("end_time"))
        include_internal = bool(q.get("include_internal"))
        wanted = [
            (p[0], p[1]) for p in (q.get("attributes") or []) if isinstance(p, list | tuple) and len(p) >= 2
        ]
        excluded = q.get("exclude_attributes") or []
        matched: list[ParsedSpan] = []
        for span in source:
            if span.internal and not include_internal:
                continue
            if service is not None and span.service_name != service:
                continue
            if name_l is not None and name_l not in span.name.lower():
                continue
            if status_l is not None and span.status != status_l:
                continue
            start = span.start
            if start_ns is not None and start < start_ns:
                continue
            if end_ns is not None and start > end_ns:
                continue
            if min_ns is not None or max_ns is not None:
                duration = span.duration_ns
                if min_ns is not None and duration < min_ns:
                    continue
                if max_ns is not None and duration > max_ns:
                    continue
            if wanted or excluded:
                attrs = dict((pair[0], pair[1]) for pair in span.record["attributes"])
                if not all(_attr_matches(attrs, k, v) for k, v in wanted):
                    continue
                if any(
                    (
                        _attr_matches(attrs, e[0], e[1])
                        if isinstance(e, list | tuple) and len(e) >= 2
                        else e in attrs
                    )
                    for e in excluded
                ):
                    continue
            matched.append(span)
        sort_by = q.get("sort_by") or "start_time"
        keys = {
            "duration": lambda s: s.duration_ns,
            "name": lambda s: s.name,
            "end_time": lambda s: s.end,
            "service_name": lambda s: s.service_name,
        }
        matched.sort(
            key=keys.get(sort_by, lambda s: s.start), reverse=(q.get("sort_order") or "asc") == "desc"
        )
        offset = max(0, int(q.get("offset") or 0))
        limit = max(0, int(q["limit"] if q.get("limit") is not None else 100))
        return len(matched), [s.record for s in matched[offset : offset + limit]]

    def tree(self, trace_id: str) -> list[dict[str, Any]]:
        """``roots``: each span with ``children`` (recursively), ordered by start time; spans whose
        parent is not stored are roots too."""
        spans = sorted(self.trace(trace_id), key=lambda s: s.start)
        nodes = {s.span_id: {**s.record, "children": []} for s in spans}
        roots = []
        for span in spans:
            node = nodes[span.span_id]
            parent = nodes.get(span.parent_span_id or "")
            if parent is not None and parent is not node:
                parent["children"].append(node)
            else:
                roots.append(node)
        return roots


class LogStore:
    """Log records in a ring buffer.

    Args:
        max_logs: Capacity; the oldest record is evicted beyond it.
    """

    def __init__(self, max_logs: int) -> None:
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_logs)
        self.max_logs = max_logs
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, record: dict[str, Any]) -> None:
        """Store one record (evicting the oldest when full)."""
        if len(self._ring) >= self.max_logs:
            self.evicted += 1
        self._ring.append(record)

    def clear(self) -> int:
        """Remove every record; returns how many there were."""
        count = len(self._ring)
        self._ring.clear()
        return count

    def query(self, q: Mapping[str, Any]) -> tuple[int, list[dict[str, Any]]]:
        """``engine::logs::list`` filtering (times in ms), newest first, paged.

        Returns:
            ``(total matching, page of StoredLog records)``.
        """
        start_ns = _ms_to_ns(q.get("start_time"))
        end_ns = _ms_to_ns(q.get("end_time"))
        trace_id = q.get("trace_id")
        span_id = q.get("span_id")
        severity_min = q.get("severity_min")
        text = q.get("severity_text")
        level = severity_level(0, text) if isinstance(text, str) else None
        matched = []
        for record in reversed(self._ring):
            ts = record["timestamp_unix_nano"]
            if start_ns is not None and ts < start_ns:
                continue
            if end_ns is not None and ts > end_ns:
                continue
            if trace_id is not None and record["trace_id"] != trace_id:
                continue
            if span_id is not None and record["span_id"] != span_id:
                continue
            if severity_min is not None and record["severity_number"] < severity_min:
                continue
            if (
                level is not None
                and severity_level(record["severity_number"], record["severity_text"]) != level
            ):
                continue
            matched.append(record)
        matched.sort(key=lambda r: r["timestamp_unix_nano"], reverse=True)
        offset = max(0, int(q.get("offset") or 0))
        limit = max(0, int(q["limit"] if q.get("limit") is not None else 100))
        return len(matched), matched[offset : offset + limit]


class MetricStore:
    """Metric points in a ring buffer, plus the latest resource metrics of each worker.

    Args:
        max_points: Capacity; the oldest point is evicted beyond it.
    """

    def __init__(self, max_points: int) -> None:
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_points)
        self.max_points = max_points
        self.evicted = 0
        self._workers: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, point: dict[str, Any]) -> None:
        """Store one point; ``iii.worker.*`` gauges with ``worker.id`` also update that worker's
        ``latest_metrics``."""
        if len(self._ring) >= self.max_points:
            self.evicted += 1
        self._ring.append(point)
        field = WORKER_METRIC_FIELDS.get(point["name"])
        if field is None:
            return
        worker_id = point["attributes"].get("worker.id")
        value = point.get("value")
        if not isinstance(worker_id, str) or value is None:
            return
        latest = self._workers.setdefault(worker_id, {})
        latest[field] = value
        stamp = point["timestamp_unix_nano"] // 1_000_000 or int(time.time() * 1000)
        latest["timestamp_ms"] = max(int(latest.get("timestamp_ms", 0)), stamp)
        latest["runtime"] = point.get("runtime") or latest.get("runtime") or "unknown"

    def latest_worker_metrics(self, worker_id: str) -> dict[str, Any] | None:
        """``WorkerMetrics`` of a worker (keys sorted), unless older than two minutes."""
        latest = self._workers.get(worker_id)
        if latest is None:
            return None
        if int(time.time() * 1000) - int(latest.get("timestamp_ms", 0)) > WORKER_METRICS_LOOKBACK_MS:
            return None
        return dict(sorted(latest.items()))

    def forget_worker(self, worker_id: str) -> None:
        """Drop a disconnected worker's latest metrics."""
        self._workers.pop(worker_id, None)

    def query(self, q: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Points filtered by ``start_time``/``end_time`` (ms) and ``metric_name`` (exact)."""
        start_ns = _ms_to_ns(q.get("start_time"))
        end_ns = _ms_to_ns(q.get("end_time"))
        name = q.get("metric_name")
        out = []
        for point in self._ring:
            ts = point["timestamp_unix_nano"]
            if start_ns is not None and ts < start_ns:
                continue
            if end_ns is not None and ts > end_ns:
                continue
            if name is not None and point["name"] != name:
                continue
            out.append(point)
        return out

    def clear(self) -> None:
        """Remove every point (worker metrics stay)."""
        self._ring.clear()


def aggregate(points: Sequence[Mapping[str, Any]], interval_s: int) -> list[dict[str, Any]]:
    """Bucket points per metric name and ``interval_s`` window: ``{metric_name, bucket_start_ms,
    count, sum, avg, min, max}`` of their values (histogram points count their ``sum``)."""
    buckets: dict[tuple[str, int], list[float]] = {}
    width = max(1, interval_s) * 1000
    for point in points:
        value = point.get("value", point.get("sum"))
        if not isinstance(value, int | float):
            continue
        start = (point["timestamp_unix_nano"] // 1_000_000) // width * width
        buckets.setdefault((point["name"], start), []).append(float(value))
    rows = []
    for (name, start), values in sorted(buckets.items()):
        rows.append(
            {
                "avg": sum(values) / len(values),
                "bucket_start_ms": start,
                "count": len(values),
                "max": max(values),
                "metric_name": name,
                "min": min(values),
                "sum": sum(values),
            }
        )
    return rows
