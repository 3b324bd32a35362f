"""The dashboard's in-memory model: every event from a data source lands here.

Pure Python (no Textual, no I/O), so the TUI, ``--snapshot``, ``--record``/``--replay`` and the
benchmark share it. Everything that grows is bounded: invocations, logs, traces, change feed and
per-function samples are ring buffers (tui.md §3.2). Every incoming record is read defensively:
missing fields get defaults, odd types are shown as text, long values are cut, control characters
and undecodable text are made visible (cases: malformed engine data).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_TEXT",
    "SAMPLING_WINDOW_S",
    "Event",
    "FnStats",
    "Invocation",
    "LogLine",
    "Sampling",
    "Store",
    "StoreLimits",
    "as_dict",
    "as_list",
    "clean_text",
    "is_function_span",
    "is_root_span",
    "percentile",
    "span_function",
]

#: Longest text kept for one displayed value (the rest is replaced by a "+N chars" note).
MAX_TEXT = 2000
#: The window, in seconds, over which the views report the sampling of pushed traces.
SAMPLING_WINDOW_S = 5.0

_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Event:
    """One unit of data from a source; also one line of a session file.

    Attributes:
        t: When it happened (seconds since the epoch; the replay clock follows it).
        kind: What it carries (``functions``, ``workers``, ``spans``, ``logs``, …; see
            :meth:`Store.apply`).
        data: The engine's answer or push payload, as received.
    """

    t: float
    kind: str
    data: Any = None


def clean_text(value: Any, limit: int = MAX_TEXT) -> str:
    """Make any value safe to draw on one terminal line.

    Non-strings are shown as compact JSON; lone surrogates (undecodable bytes) become ``?``;
    newlines become ``⏎``; other control characters (escape sequences) are shown as ``\\xNN``;
    text longer than ``limit`` is cut with a ``… (+N chars)`` note.
    """
    if value is None:
        return ""
    text: str
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            text = repr(value)
    value = text
    extra = 0
    if len(value) > limit:
        extra = len(value) - limit
        value = value[:limit]
    value = value.encode("utf-8", "replace").decode("utf-8", "replace")
    value = value.replace("\r\n", "\n").replace("\n", " ⏎ ").replace("\t", "    ")
    value = _CTRL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    if extra:
        value += f"… (+{extra} chars)"
    return str(value)


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else an empty dict."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; ``None`` when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def _attrs(span: Mapping[str, Any]) -> dict[str, Any]:
    raw = span.get("attributes")
    if isinstance(raw, dict):
        return raw
    out: dict[str, Any] = {}
    for pair in as_list(raw):
        if isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str):
            out[pair[0]] = pair[1]
        elif isinstance(pair, dict) and isinstance(pair.get("key"), str):
            out[pair["key"]] = pair.get("value")
    return out


#: Attributes naming the function a span ran; the SDKs write ``iii.function.id`` (telemetry.md).
_FN_ATTRS = ("iii.function.id", "iii.function_id", "function_id", "faas.name", "iii.function")
#: Span-name prefixes of invocations: ``execute <fn>`` (a worker's handler span), ``call <fn>``
#: (the engine's span of a built-in called with a trace context).
_FN_PREFIXES = ("execute ", "call ", "invoke ", "trigger ")
_NO_PARENT = frozenset({"", "0" * 16, "0" * 32})


def span_function(span: Mapping[str, Any]) -> str:
    """The function a span ran: a function-id attribute, else the span name without its
    ``execute ``/``call `` prefix, else the span name."""
    attrs = _attrs(span)
    for key in _FN_ATTRS:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    name = span.get("name")
    if not isinstance(name, str):
        return "?"
    for prefix in _FN_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return name


def is_function_span(span: Mapping[str, Any]) -> bool:
    """Whether a span is one function invocation (not an application or HTTP-client span)."""
    attrs = _attrs(span)
    if any(isinstance(attrs.get(key), str) and attrs.get(key) for key in _FN_ATTRS):
        return True
    name = span.get("name")
    return isinstance(name, str) and name.startswith(_FN_PREFIXES)


def is_root_span(span: Mapping[str, Any]) -> bool:
    """A span without a parent: ``parent_span_id`` null, empty or all zeros (the engine stores
    ``null``; OTLP writers use the others)."""
    parent = span.get("parent_span_id")
    return not isinstance(parent, str) or parent in _NO_PARENT


def _span_outcome(span: Mapping[str, Any]) -> tuple[bool, str, float | None]:
    """``(pending, status, duration in ms)`` of a span (a span without an end is running)."""
    start_ns = _num(span.get("start_time_unix_nano")) or 0.0
    end_ns = _num(span.get("end_time_unix_nano"))
    pending = bool(span.get("pending")) or not end_ns
    status = "running" if pending else clean_text(span.get("status") or "unset", 20)
    duration = None if pending or end_ns is None else max(0.0, (end_ns - start_ns) / 1e6)
    return pending, status, duration


def _span_start(span: Mapping[str, Any]) -> float:
    return _num(span.get("start_time_unix_nano")) or 0.0


def _log_time(rec: Mapping[str, Any]) -> float:
    return _num(rec.get("timestamp_unix_nano")) or _num(rec.get("observed_timestamp_unix_nano")) or 0.0


@dataclass(slots=True)
class Invocation:
    """One invocation, built from a root span.

    Attributes:
        worker: The name of the worker serving ``function`` (from the function registry), or ""
            while unknown; spans carry only the OpenTelemetry service name, which every worker
            of a process shares (``iii-python-sdk`` by default).
        service: The span's ``service_name``.
    """

    trace_id: str
    span_id: str
    function: str
    worker: str
    status: str
    start: float
    duration_ms: float | None
    error: str = ""
    service: str = ""

    @property
    def key(self) -> str:
        """``trace_id/span_id``."""
        return f"{self.trace_id}/{self.span_id}"

    @property
    def shown_worker(self) -> str:
        """The worker name, else the service name."""
        return self.worker or self.service

    def row(self) -> dict[str, object]:
        """Fields for the filter grammar."""
        return {
            "function": self.function,
            "worker": self.shown_worker,
            "service": self.service,
            "status": self.status,
            "duration": self.duration_ms if self.duration_ms is not None else -1.0,
            "trace": self.trace_id,
            "span": self.span_id,
            "error": self.error,
        }


@dataclass(slots=True)
class LogLine:
    """One log record, sanitized for display."""

    ts: float
    level: str
    service: str
    message: str
    trace_id: str
    span_id: str
    severity: int = 0

    def row(self) -> dict[str, object]:
        """Fields for the filter grammar."""
        return {
            "level": self.level,
            "service": self.service,
            "message": self.message,
            "trace": self.trace_id,
            "span": self.span_id,
        }


@dataclass
class FnStats:
    """Rolling call statistics of one function (from the invocation feed).

    Attributes:
        calls: Completed calls seen.
        errors: Calls that ended with status ``error``.
        samples: The last durations in ms (ring).
        buckets: Per-second ``[second, count, sum_ms, errors]`` for the last 60 s (sparklines).
    """

    calls: int = 0
    errors: int = 0
    last: float = 0.0
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    buckets: deque[list[float]] = field(default_factory=lambda: deque(maxlen=60))

    def add(self, ts: float, duration_ms: float | None, error: bool) -> None:
        """Record one completed call."""
        self.calls += 1
        self.errors += int(error)
        self.last = max(self.last, ts)
        if duration_ms is not None:
            self.samples.append(duration_ms)
        second = float(int(ts))
        if self.buckets and self.buckets[-1][0] == second:
            bucket = self.buckets[-1]
        elif self.buckets and self.buckets[-1][0] > second:
            bucket = next((b for b in self.buckets if b[0] == second), self.buckets[-1])
        else:
            bucket = [second, 0.0, 0.0, 0.0]
            self.buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += duration_ms or 0.0
        bucket[3] += int(error)

    def error_pct(self) -> float | None:
        """Share of calls that failed, in percent."""
        return 100.0 * self.errors / self.calls if self.calls else None

    def p(self, q: float) -> float | None:
        """Latency quantile over the recent samples."""
        return percentile(self.samples, q)

    def sparkline(self, now: float, width: int = 60) -> list[float]:
        """Average latency per second over the last ``width`` seconds (0 for idle seconds)."""
        end = int(now)
        by_second = {int(b[0]): b for b in self.buckets}
        out: list[float] = []
        for second in range(end - width + 1, end + 1):
            b = by_second.get(second)
            out.append(b[2] / b[1] if b and b[1] else 0.0)
        return out


@dataclass(frozen=True, slots=True)
class Sampling:
    """How pushed traces were sampled over a window (see :meth:`Store.sampling_in`).

    Attributes:
        notified: New trace ids the engine's ``trace`` trigger named.
        fetched: Trace ids whose spans were fetched.
        skipped: Trace ids skipped (older than the newest the source fetches at once).
    """

    notified: int = 0
    fetched: int = 0
    skipped: int = 0

    @property
    def active(self) -> bool:
        """Whether some traces were skipped (the invocation stream shows a sample)."""
        return self.skipped > 0


@dataclass(frozen=True)
class StoreLimits:
    """Ring sizes (memory is bounded by these)."""

    invocations: int = 5000
    logs: int = 5000
    traces: int = 500
    spans_per_trace: int = 2000
    feed: int = 200
    worker_metrics: int = 60
    invoke_results: int = 50
    latency_window: int = 2000


#: Engine functions each view reads; a view whose function is missing says so.
VIEW_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "overview": ("engine::health::check", "engine::metrics::list"),
    "workers": ("engine::workers::list", "engine::workers::info"),
    "functions": ("engine::functions::list", "engine::functions::info"),
    "triggers": ("engine::registered-triggers::list", "engine::triggers::list"),
    "invocations": ("engine::traces::list",),
    "trace": ("engine::traces::tree",),
    "logs": ("engine::logs::list",),
    "channels": ("engine::channels::list",),
    "streams": ("stream::list_all", "state::list_groups"),
    "queues": ("engine::queue::list_topics", "engine::queue::dlq_topics"),
}


class Store:
    """Everything the dashboard knows, updated only through :meth:`apply`.

    Args:
        limits: Ring sizes.
    """

    def __init__(self, limits: StoreLimits | None = None) -> None:
        self.limits = limits or StoreLimits()
        self.now = 0.0
        self.versions: Counter[str] = Counter()
        self.url = ""
        self.conn_state = "connecting"
        self.stale_since: float | None = None
        self.connected_once = False
        self.last_error = ""
        #: Why the connection failed for good (e.g. "refused the connection (HTTP 401): set
        #: III_TOKEN") and its banner text ("authentication failed (HTTP 401): set III_TOKEN"),
        #: shown instead of "stale"; cleared when connected.
        self.failure = ""
        self.failure_banner = ""
        self.missing: dict[str, float] = {}
        self.functions: dict[str, dict[str, Any]] = {}
        self.function_info: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        #: The last name of every worker id seen (the newest 10,000), so a channel's owner keeps a
        #: name after its worker disconnected.
        self.worker_names: OrderedDict[str, str] = OrderedDict()
        self.worker_info: dict[str, dict[str, Any]] = {}
        self.worker_metrics: dict[str, deque[dict[str, Any]]] = {}
        self.triggers: dict[str, dict[str, Any]] = {}
        self.trigger_types: dict[str, dict[str, Any]] = {}
        self.health: dict[str, Any] | None = None
        self.metrics: dict[str, Any] | None = None
        #: Invocations per function from ``engine::metrics::list`` minus the dashboard's own
        #: reads (``None`` until the engine reported ``by_function``).
        self.metric_calls: dict[str, int] | None = None
        self._metric_totals: deque[tuple[float, int]] = deque(maxlen=120)
        self._metric_raw = 0.0
        #: ``(t, notified, fetched, skipped)`` per fetch of pushed traces (``sampling`` events).
        self.sampling: deque[tuple[float, int, int, int]] = deque(maxlen=512)
        self.traces_notified = 0
        self.traces_skipped = 0
        lim = self.limits
        self.invocations: deque[Invocation] = deque(maxlen=lim.invocations)
        self._inv_index: dict[str, Invocation] = {}
        self.invocations_total = 0
        self.fn_stats: dict[str, FnStats] = {}
        self._recent: deque[tuple[float, float, bool]] = deque(maxlen=lim.latency_window)
        self.traces: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()
        self.trace_trees: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.logs: deque[LogLine] = deque(maxlen=lim.logs)
        self.logs_total = 0
        self._log_seen: deque[str] = deque(maxlen=lim.logs)
        self._log_seen_set: set[str] = set()
        self.last_log_ns = 0
        self.last_span_ns = 0
        self.channels: list[dict[str, Any]] = []
        self.streams: list[dict[str, Any]] = []
        self.stream_items: dict[str, dict[str, list[Any]]] = {}
        self.state_groups: list[str] = []
        self.state_items: dict[str, list[Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.dlq: dict[str, dict[str, Any]] = {}
        self.dlq_messages: dict[str, list[dict[str, Any]]] = {}
        self.feed: deque[tuple[float, str]] = deque(maxlen=lim.feed)
        self.invoke_results: deque[dict[str, Any]] = deque(maxlen=lim.invoke_results)

    # -- helpers -------------------------------------------------------------------------------
    def touch(self, *sections: str) -> None:
        """Mark sections changed (screens redraw only what changed)."""
        for section in sections:
            self.versions[section] += 1

    def tick(self, now: float) -> None:
        """Advance the store's notion of now (ages, rates and sparklines use it)."""
        if now > self.now:
            self.now = now

    def is_missing(self, function_id: str) -> bool:
        """Whether the engine answered ``function_not_found`` for ``function_id``."""
        return function_id in self.missing

    def worker_of(self, function_id: str) -> str:
        """The name of the worker serving ``function_id`` ("" when the function is unknown)."""
        name = as_dict(self.functions.get(function_id)).get("worker_name")
        return clean_text(name, 120) if isinstance(name, str) else ""

    def view_missing(self, view: str) -> list[str]:
        """The functions of ``view`` the engine lacks (all of them means the view is empty)."""
        return [f for f in VIEW_FUNCTIONS.get(view, ()) if f in self.missing]

    # -- apply ---------------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        """Update the model with one event (unknown kinds are ignored)."""
        self.tick(event.t)
        handler = getattr(self, f"_on_{event.kind.replace('-', '_')}", None)
        if handler is None:
            return
        handler(event.t, event.data)

    def apply_all(self, events: Iterable[Event]) -> None:
        """Apply several events in order."""
        for event in events:
            self.apply(event)

    def _on_conn(self, t: float, data: Any) -> None:
        d = as_dict(data)
        state = str(d.get("state", "disconnected"))
        if d.get("url"):
            self.url = str(d["url"])
        if state == "connected":
            self.connected_once = True
            self.stale_since = None
            self.failure = self.failure_banner = ""
        elif state == "failed" and d.get("failure"):
            self.failure = clean_text(d["failure"], 300)
            self.failure_banner = clean_text(d.get("banner") or d["failure"], 300)
        elif self.stale_since is None and (self.connected_once or state in ("failed", "unreachable")):
            self.stale_since = t
        if d.get("error"):
            self.last_error = clean_text(d["error"], 300)
        self.conn_state = state
        self.touch("conn")

    def _on_missing(self, t: float, data: Any) -> None:
        fid = str(as_dict(data).get("function_id", ""))
        if fid and fid not in self.missing:
            self.missing[fid] = t
            self.touch("missing")

    def _on_available(self, t: float, data: Any) -> None:
        fid = str(as_dict(data).get("function_id", ""))
        if self.missing.pop(fid, None) is not None:
            self.touch("missing")

    def _on_functions(self, t: float, data: Any) -> None:
        rows = as_list(as_dict(data).get("functions")) if isinstance(data, dict) else as_list(data)
        new: dict[str, dict[str, Any]] = {}
        for row in rows:
            if isinstance(row, dict) and row.get("function_id") is not None:
                new[clean_text(row["function_id"], 300)] = row
        if new != self.functions:
            added = new.keys() - self.functions.keys()
            removed = self.functions.keys() - new.keys()
            if self.functions:
                for fid in sorted(added)[:5]:
                    self.feed.append((t, f"function registered: {fid}"))
                for fid in sorted(removed)[:5]:
                    self.feed.append((t, f"function removed: {fid}"))
            self.functions = new
            self.touch("functions", "feed")
            if any(not inv.worker for inv in self.invocations):
                for inv in self.invocations:
                    if not inv.worker:
                        inv.worker = self.worker_of(inv.function)
                self.touch("invocations")

    def _on_function_info(self, t: float, data: Any) -> None:
        d = as_dict(data)
        fid = d.get("function_id")
        if isinstance(fid, str):
            self.function_info[fid] = d
            self.touch("function_info")

    def _on_workers(self, t: float, data: Any) -> None:
        rows = as_list(as_dict(data).get("workers")) if isinstance(data, dict) else as_list(data)
        new: dict[str, dict[str, Any]] = {}
        for row in rows:
            if isinstance(row, dict):
                wid = row.get("id") or row.get("name")
                if wid is not None:
                    new[clean_text(wid, 300)] = row
        if new != self.workers:
            if self.workers:
                for wid in sorted(new.keys() - self.workers.keys())[:5]:
                    self.feed.append((t, f"worker connected: {clean_text(new[wid].get('name'))} ({wid})"))
                for wid in sorted(self.workers.keys() - new.keys())[:5]:
                    old = self.workers[wid]
                    self.feed.append((t, f"worker disconnected: {clean_text(old.get('name'))} ({wid})"))
            for gone in self.worker_metrics.keys() - new.keys():
                self.worker_metrics.pop(gone, None)
                self.worker_info.pop(gone, None)
            self.workers = new
            for wid, row in new.items():
                if isinstance(row.get("name"), str) and row["name"]:
                    self.worker_names[wid] = clean_text(row["name"], 120)
                    self.worker_names.move_to_end(wid)
            while len(self.worker_names) > 10_000:
                self.worker_names.popitem(last=False)
            self.touch("workers", "feed")

    def _on_worker_info(self, t: float, data: Any) -> None:
        d = as_dict(data)
        worker = as_dict(d.get("worker"))
        wid = worker.get("id") or worker.get("name")
        if wid is None:
            return
        wid = clean_text(wid, 300)
        self.worker_info[wid] = d
        metrics = worker.get("latest_metrics")
        if isinstance(metrics, dict):
            ring = self.worker_metrics.setdefault(wid, deque(maxlen=self.limits.worker_metrics))
            if not ring or ring[-1].get("timestamp_ms") != metrics.get("timestamp_ms"):
                ring.append(metrics)
        self.touch("workers")

    def _on_registry(self, t: float, data: Any) -> None:
        d = as_dict(data)
        what = clean_text(d.get("event", "change"), 80)
        who = clean_text(d.get("worker_id", ""), 80)
        self.feed.append((t, f"{what} {who}".strip()))
        self.touch("feed")

    def _on_triggers(self, t: float, data: Any) -> None:
        rows = as_list(as_dict(data).get("registered_triggers")) if isinstance(data, dict) else as_list(data)
        new = {
            clean_text(r.get("id"), 300): r for r in rows if isinstance(r, dict) and r.get("id") is not None
        }
        if new != self.triggers:
            self.triggers = new
            self.touch("triggers")

    def _on_trigger_types(self, t: float, data: Any) -> None:
        rows = as_list(as_dict(data).get("triggers")) if isinstance(data, dict) else as_list(data)
        new = {
            clean_text(r.get("id"), 300): r for r in rows if isinstance(r, dict) and r.get("id") is not None
        }
        if new != self.trigger_types:
            self.trigger_types = new
            self.touch("triggers")

    def _on_health(self, t: float, data: Any) -> None:
        self.health = as_dict(data)
        self.touch("health")

    def _on_metrics(self, t: float, data: Any) -> None:
        d = self.metrics = as_dict(data)
        invocations = as_dict(as_dict(d.get("engine_metrics")).get("invocations"))
        by_function = invocations.get("by_function")
        if isinstance(by_function, dict):
            own = as_dict(d.get("own_calls"))
            calls: dict[str, int] = {}
            for fid, count in by_function.items():
                n = _num(count)
                if n is not None:
                    calls[clean_text(fid, 300)] = max(0, int(n - (_num(own.get(fid)) or 0.0)))
            self.metric_calls = calls
            total = sum(n for fid, n in calls.items() if not self._internal(fid))
            stamp = _num(d.get("timestamp"))
            when = stamp / 1000 if stamp else t
            raw = _num(invocations.get("total")) or 0.0
            samples = self._metric_totals
            if samples and (raw < self._metric_raw or when < samples[-1][0]):
                samples.clear()  # the engine restarted (counters start again) or time went back
            self._metric_raw = raw
            samples.append((when, total))
            self.touch("stats")
        self.touch("metrics")

    def _internal(self, function_id: str) -> bool:
        """Not a user invocation for the rates: ``engine::*`` and ``metadata.internal`` functions
        (the dashboard's own push handlers among them)."""
        if function_id.startswith("engine::"):
            return True
        return as_dict(as_dict(self.functions.get(function_id)).get("metadata")).get("internal") is True

    def _on_sampling(self, t: float, data: Any) -> None:
        d = as_dict(data)
        notified, fetched, skipped = (
            max(0, int(_num(d.get(k)) or 0)) for k in ("notified", "fetched", "skipped")
        )
        self.sampling.append((t, notified, fetched, skipped))
        self.traces_notified += notified
        self.traces_skipped += skipped
        self.touch("sampling")

    def _on_spans(self, t: float, data: Any) -> None:
        rows = as_list(as_dict(data).get("spans")) if isinstance(data, dict) else as_list(data)
        # the first read asks for the newest spans first; the stream shows the oldest first
        spans = sorted((s for s in rows if isinstance(s, dict)), key=_span_start)
        changed = False
        for span in spans:
            changed |= self._add_span(span)
        if changed:
            self.touch("invocations", "traces")

    def _add_span(self, span: dict[str, Any]) -> bool:
        trace_id = span.get("trace_id")
        span_id = span.get("span_id")
        if not isinstance(trace_id, str) or not isinstance(span_id, str):
            return False
        spans = self.traces.get(trace_id)
        if spans is None:
            spans = self.traces[trace_id] = {}
            while len(self.traces) > self.limits.traces:
                self.traces.popitem(last=False)
        previous = spans.get(span_id)
        if len(spans) < self.limits.spans_per_trace or span_id in spans:
            spans[span_id] = span
        start_ns = _num(span.get("start_time_unix_nano")) or 0.0
        self.last_span_ns = max(self.last_span_ns, int(start_ns))
        pending, status, duration = _span_outcome(span)
        key = f"{trace_id}/{span_id}"
        if key not in self._inv_index and not self._is_invocation(span, spans):
            if is_root_span(span):
                # an application or HTTP-client root (e.g. a worker's urlopen): not an
                # invocation itself, but the function spans right under it are
                self._promote_children(trace_id, span_id, spans)
                return True
            # A nested invocation (B called by A's handler) counts for B's statistics; only
            # invocations make the invocation stream.
            was_done = (
                previous is not None and not previous.get("pending") and previous.get("end_time_unix_nano")
            )
            if not pending and not was_done and is_function_span(span):
                stats = self.fn_stats.setdefault(clean_text(span_function(span), 300), FnStats())
                stats.add(start_ns / 1e9, duration, status == "error")
                self.touch("stats")
            return True
        self._track_invocation(span, counted=False)
        return True

    @staticmethod
    def _is_invocation(span: Mapping[str, Any], spans: Mapping[str, Mapping[str, Any]]) -> bool:
        """A function span that is a root, or whose parent is a root that is not a function span
        (an application or HTTP-client span: the call came from outside any function)."""
        if not is_function_span(span):
            return False
        if is_root_span(span):
            return True
        parent = spans.get(str(span.get("parent_span_id")))
        return parent is not None and is_root_span(parent) and not is_function_span(parent)

    def _promote_children(self, trace_id: str, span_id: str, spans: Mapping[str, dict[str, Any]]) -> None:
        """Function spans that arrived before their application/HTTP-client root become
        invocations now (their statistics were counted already, as nested calls)."""
        for child in list(spans.values()):
            if (
                child.get("parent_span_id") == span_id
                and is_function_span(child)
                and f"{trace_id}/{child.get('span_id')}" not in self._inv_index
            ):
                self._track_invocation(child, counted=True)

    def _track_invocation(self, span: dict[str, Any], *, counted: bool) -> None:
        """Add or update the invocation of ``span``; ``counted``: its function's statistics
        already hold it."""
        trace_id, span_id = str(span["trace_id"]), str(span["span_id"])
        start_ns = _num(span.get("start_time_unix_nano")) or 0.0
        pending, status, duration = _span_outcome(span)
        key = f"{trace_id}/{span_id}"
        inv = self._inv_index.get(key)
        was_running = inv is None or inv.status == "running"
        if inv is None:
            function = clean_text(span_function(span), 300)
            inv = Invocation(
                trace_id=trace_id,
                span_id=span_id,
                function=function,
                worker=self.worker_of(function),
                status=status,
                start=start_ns / 1e9,
                duration_ms=duration,
                error=clean_text(span.get("status_description") or "", 500),
                service=clean_text(span.get("service_name") or "", 120),
            )
            if len(self.invocations) == self.invocations.maxlen:
                old = self.invocations[0]
                self._inv_index.pop(old.key, None)
            self.invocations.append(inv)
            self._inv_index[key] = inv
            self.invocations_total += 1
        else:
            inv.status = status
            inv.duration_ms = duration
            inv.error = clean_text(span.get("status_description") or "", 500)
        if was_running and not pending:
            if not counted:
                stats = self.fn_stats.setdefault(inv.function, FnStats())
                stats.add(inv.start, duration, status == "error")
            self._recent.append((inv.start, duration or 0.0, status == "error"))
            self.touch("stats")

    def _on_trace_tree(self, t: float, data: Any) -> None:
        d = as_dict(data)
        trace_id = d.get("trace_id")
        if not isinstance(trace_id, str):
            roots = as_list(d.get("roots"))
            first = as_dict(roots[0]) if roots else {}
            trace_id = first.get("trace_id") if isinstance(first.get("trace_id"), str) else None
        if trace_id is None:
            return
        self.trace_trees[trace_id] = [r for r in as_list(d.get("roots")) if isinstance(r, dict)]
        self.trace_trees.move_to_end(trace_id)
        while len(self.trace_trees) > 50:
            self.trace_trees.popitem(last=False)
        self.touch("traces")

    def _on_logs(self, t: float, data: Any) -> None:
        rows = as_list(as_dict(data).get("logs")) if isinstance(data, dict) else as_list(data)
        records = [rec for rec in rows if isinstance(rec, dict)]
        # engine::logs::list answers newest first; the tail shows the oldest first. Reversing
        # before the (stable) sort keeps records with equal timestamps in the engine's order.
        records.reverse()
        records.sort(key=_log_time)
        added = False
        for rec in records:
            added |= self._add_log(rec)
        if added:
            self.touch("logs")

    def _add_log(self, rec: dict[str, Any]) -> bool:
        ts_ns = _log_time(rec)
        body = rec.get("body")
        ident = f"{int(ts_ns)}|{rec.get('span_id')}|{str(body)[:64]}"
        if ident in self._log_seen_set:
            return False
        if len(self._log_seen) == self._log_seen.maxlen:
            self._log_seen_set.discard(self._log_seen[0])
        self._log_seen.append(ident)
        self._log_seen_set.add(ident)
        severity = int(_num(rec.get("severity_number")) or 0)
        level = rec.get("severity_text")
        if not isinstance(level, str) or not level:
            level = _level_of(severity)
        self.logs.append(
            LogLine(
                ts=ts_ns / 1e9,
                level=clean_text(level.upper(), 10),
                service=clean_text(rec.get("service_name") or "", 80),
                message=clean_text(body),
                trace_id=clean_text(rec.get("trace_id") or "", 64),
                span_id=clean_text(rec.get("span_id") or "", 32),
                severity=severity,
            )
        )
        self.logs_total += 1
        self.last_log_ns = max(self.last_log_ns, int(ts_ns))
        return True

    def _on_channels(self, t: float, data: Any) -> None:
        rows = as_list(as_dict(data).get("channels")) if isinstance(data, dict) else as_list(data)
        new = [r for r in rows if isinstance(r, dict)]
        if new != self.channels:
            self.channels = new
            self.touch("channels")

    def _on_streams(self, t: float, data: Any) -> None:
        d = as_dict(data)
        rows = as_list(d.get("stream") or d.get("streams")) if isinstance(data, dict) else as_list(data)
        new = [r for r in rows if isinstance(r, dict)]
        if new != self.streams:
            self.streams = new
            self.touch("streams")

    def _on_stream_items(self, t: float, data: Any) -> None:
        d = as_dict(data)
        stream = d.get("stream")
        if isinstance(stream, str):
            groups = as_dict(d.get("groups"))
            self.stream_items[stream] = {clean_text(g, 200): as_list(items) for g, items in groups.items()}
            self.touch("streams")

    def _on_state_groups(self, t: float, data: Any) -> None:
        groups = as_list(as_dict(data).get("groups")) if isinstance(data, dict) else as_list(data)
        new = sorted(clean_text(g, 200) for g in groups)
        if new != self.state_groups:
            self.state_groups = new
            self.touch("streams")

    def _on_state_items(self, t: float, data: Any) -> None:
        d = as_dict(data)
        scope = d.get("scope")
        if isinstance(scope, str):
            self.state_items[scope] = as_list(d.get("items"))
            self.touch("streams")

    def _on_queues(self, t: float, data: Any) -> None:
        d = as_dict(data)
        rows = as_list(d.get("topics")) if isinstance(data, dict) else as_list(data)
        new: dict[str, dict[str, Any]] = {}
        for row in rows:
            if isinstance(row, str):
                new[clean_text(row, 200)] = {"topic": row}
            elif isinstance(row, dict):
                name = row.get("topic") or row.get("name") or row.get("queue")
                if name is not None:
                    new[clean_text(name, 200)] = row
        if new != self.queues:
            self.queues = new
            self.touch("queues")

    def _on_topic_stats(self, t: float, data: Any) -> None:
        d = as_dict(data)
        name = d.get("topic") or d.get("name") or d.get("queue")
        if name is None:
            return
        key = clean_text(name, 200)
        merged = {**self.queues.get(key, {}), **d}
        if merged != self.queues.get(key):
            self.queues[key] = merged
            self.touch("queues")

    def _on_dlq(self, t: float, data: Any) -> None:
        d = as_dict(data)
        rows = as_list(d.get("topics")) if isinstance(data, dict) else as_list(data)
        new: dict[str, dict[str, Any]] = {}
        for row in rows:
            if isinstance(row, str):
                new[clean_text(row, 200)] = {"topic": row}
            elif isinstance(row, dict):
                name = row.get("topic") or row.get("queue") or row.get("name")
                if name is not None:
                    new[clean_text(name, 200)] = row
        if new != self.dlq:
            self.dlq = new
            self.touch("queues")

    def _on_dlq_messages(self, t: float, data: Any) -> None:
        d = as_dict(data)
        topic = d.get("topic") or d.get("queue")
        if isinstance(topic, str):
            self.dlq_messages[topic] = [m for m in as_list(d.get("messages")) if isinstance(m, dict)]
            self.touch("queues")

    def _on_invoke(self, t: float, data: Any) -> None:
        self.invoke_results.append(as_dict(data))
        self.touch("invoke")

    # -- derived values ------------------------------------------------------------------------
    def rate(self, window: float = 10.0) -> float:
        """Invocations per second: from the engine's metrics (:meth:`metrics_rate`, exact
        whatever the sampling), else from the invocation stream (:meth:`stream_rate`)."""
        exact = self.metrics_rate(window)
        return exact if exact is not None else self.stream_rate(window)

    def metrics_rate(self, window: float = 10.0) -> float | None:
        """User invocations per second between the engine's last two metrics reads at least
        ``window`` seconds apart (or the last two), ``engine::*`` and internal functions and the
        dashboard's own reads left out; ``None`` before two reads."""
        samples = self._metric_totals
        if len(samples) < 2:
            return None
        end_t, end_n = samples[-1]
        start_t, start_n = samples[-2]
        for ts, n in samples:
            if ts >= end_t - window:
                if ts < end_t:
                    start_t, start_n = ts, n
                break
        return max(0.0, end_n - start_n) / (end_t - start_t) if end_t > start_t else None

    def stream_rate(self, window: float = 10.0) -> float:
        """Completed root invocations seen per second over the last ``window`` seconds (a
        sample of the real rate while pushed traces are sampled)."""
        since = self.now - window
        count = sum(1 for ts, _, _ in reversed(self._recent) if ts >= since)
        return count / window

    def calls_of(self, function_id: str) -> int:
        """Invocations of a function: the engine's count (minus the dashboard's own reads) once
        ``engine::metrics::list`` answered, else the calls seen in spans."""
        if self.metric_calls is not None:
            return self.metric_calls.get(function_id, 0)
        stats = self.fn_stats.get(function_id)
        return stats.calls if stats else 0

    def sampling_in(self, window: float = SAMPLING_WINDOW_S) -> Sampling:
        """How pushed traces were sampled over the last ``window`` seconds."""
        since = self.now - window
        notified = fetched = skipped = 0
        for ts, n, f, k in reversed(self.sampling):
            if ts < since:
                break
            notified += n
            fetched += f
            skipped += k
        return Sampling(notified, fetched, skipped)

    def error_pct(self, window: float = 60.0) -> float | None:
        """Percentage of failed invocations over the last ``window`` seconds."""
        since = self.now - window
        recent = [err for ts, _, err in self._recent if ts >= since]
        return 100.0 * sum(recent) / len(recent) if recent else None

    def p95(self, window: float = 60.0) -> float | None:
        """95th percentile latency (ms) over the last ``window`` seconds."""
        since = self.now - window
        return percentile((d for ts, d, _ in self._recent if ts >= since), 0.95)

    def trace_spans(self, trace_id: str) -> list[dict[str, Any]]:
        """Every span known for a trace: the fetched tree (flattened) or the live feed's spans."""
        tree = self.trace_trees.get(trace_id)
        if tree is not None:
            out: list[dict[str, Any]] = []
            stack = list(reversed(tree))
            while stack:
                node = stack.pop()
                out.append(node)
                stack.extend(reversed([c for c in as_list(node.get("children")) if isinstance(c, dict)]))
            return out
        return list(self.traces.get(trace_id, {}).values())


def _level_of(severity: int) -> str:
    if severity >= 17:
        return "ERROR"
    if severity >= 13:
        return "WARN"
    if severity >= 9:
        return "INFO"
    if severity >= 5:
        return "DEBUG"
    return "TRACE" if severity else "INFO"
