"""Pure parts of the dashboard: filter grammar, store, waterfall, schema forms, session files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from iii_tui.filtering import Filter
from iii_tui.messages import StoreChanged
from iii_tui.schema_form import MISSING, build_value, fields_from_schema, initial_raw, raw_from_value
from iii_tui.session import ReplaySource, SessionError, read_session, write_session
from iii_tui.store import (
    Event,
    Store,
    StoreLimits,
    clean_text,
    is_root_span,
    percentile,
    span_function,
)
from iii_tui.views import channel_rows, function_rows, overview_lines, plural, sampling_note, screen_text
from iii_tui.waterfall import bar, waterfall_rows

from .sessions import T0, span

ROW = {"function": "orders::create", "worker": "py-1", "status": "error", "duration": 120.0, "trace": "abc"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("orders", True),
        ("ORDERS", True),
        ("nothing", False),
        ("fn:orders::", True),
        ("function=orders::create", True),
        ("fn=orders", False),
        ("status=error dur>100ms", True),
        ("dur>0.2s", False),
        ("dur<=120", True),
        ("!status=ok", True),
        ("!status=error", False),
        ("/^orders::c/", True),
        ("/^create/", False),
        ('"py-1"', True),
        ("w:py t:ab", True),
        ("missing:x", False),
    ],
)
def test_filter_grammar(text: str, expected: bool) -> None:
    flt = Filter.parse(text)
    assert flt.error is None
    assert flt.matches(ROW) is expected


def test_filter_errors_and_unknown_fields() -> None:
    assert Filter.parse("/[/").error is not None
    assert Filter.parse('"open').error is not None
    assert Filter.parse("dur>abc").error is not None
    assert Filter.parse("bogus:1 fn:x").unknown_fields({"function"}) == ["bogus"]


def test_clean_text_makes_values_safe() -> None:
    assert clean_text("a\x1b[31mb") == "a\\x1b[31mb"
    assert clean_text("bad \udcff") == "bad ?"
    assert clean_text("two\nlines") == "two ⏎ lines"
    assert clean_text({"b": 1}) == '{"b":1}'
    cut = clean_text("x" * 5000)
    assert cut.startswith("x" * 2000) and cut.endswith("(+3000 chars)")
    assert clean_text(None) == ""


def test_store_invocations_stats_and_bounds() -> None:
    store = Store(StoreLimits(invocations=10))
    for i in range(30):
        status = "error" if i % 3 == 0 else "ok"
        store.apply(
            Event(T0 + i, "spans", [span(f"{i:032x}", f"{i:016x}", "f::x", i * 1000, 10.0 + i, status)])
        )
    assert len(store.invocations) == 10 and store.invocations_total == 30
    stats = store.fn_stats["f::x"]
    assert stats.calls == 30 and stats.errors == 10
    assert stats.p(0.5) == 24.0
    # a span seen again (pending then done) counts once
    store.apply(Event(T0 + 40, "spans", [span("p" * 32, "q" * 16, "f::y", 40_000, None)]))
    assert store.invocations[-1].status == "running" and "f::y" not in store.fn_stats
    store.apply(Event(T0 + 41, "spans", [span("p" * 32, "q" * 16, "f::y", 40_000, 7.0)]))
    store.apply(Event(T0 + 42, "spans", [span("p" * 32, "q" * 16, "f::y", 40_000, 7.0)]))
    assert store.invocations[-1].status == "ok" and store.fn_stats["f::y"].calls == 1
    assert percentile([], 0.5) is None and percentile([1, 2, 3, 4], 0.95) == 4


def test_store_logs_dedup_and_missing_views() -> None:
    store = Store()
    rec = {"timestamp_unix_nano": int(T0 * 1e9), "severity_number": 17, "body": "x", "span_id": "s"}
    store.apply(Event(T0, "logs", {"logs": [rec, rec]}))
    store.apply(Event(T0, "logs", [rec]))
    assert store.logs_total == 1 and store.logs[0].level == "ERROR"
    store.apply(Event(T0, "missing", {"function_id": "engine::channels::list"}))
    assert "engine::channels::list" in screen_text(store, "channels")
    store.apply(Event(T0, "available", {"function_id": "engine::channels::list"}))
    assert "missing" not in screen_text(store, "channels")


def test_engine_answer_orders_become_oldest_first() -> None:
    """engine::logs::list answers newest first, and the first traces read asks for newest first:
    the tail and the invocation stream show the oldest first (equal stamps keep the engine's
    order)."""
    store = Store()
    logs = [
        {"timestamp_unix_nano": int((T0 + i) * 1e9), "body": f"line {i}", "span_id": str(i)}
        for i in (3, 2, 1)
    ]
    same = [{"timestamp_unix_nano": int(T0 * 1e9), "body": b, "span_id": b} for b in ("newer", "older")]
    store.apply(Event(T0, "logs", {"logs": logs}))
    store.apply(Event(T0, "logs", {"logs": same}))
    assert [x.message for x in store.logs] == ["line 1", "line 2", "line 3", "older", "newer"]
    spans = [span(f"{i:032x}", f"{i:016x}", "f::x", i * 10, 1.0) for i in (3, 1, 2)]
    store.apply(Event(T0, "spans", {"spans": spans}))
    assert [inv.trace_id for inv in store.invocations] == [f"{i:032x}" for i in (1, 2, 3)]


def test_real_span_shapes_function_root_worker_and_nested_stats() -> None:
    """Worker spans are ``execute <fn>`` with ``iii.function.id``; the engine's are ``call <fn>``;
    a nested call counts for its function; the worker comes from the function registry."""
    store = Store()
    store.apply(
        Event(T0, "functions", {"functions": [{"function_id": "shop::a", "worker_name": "shop-worker"}]})
    )
    root = span("t" * 32, "a" * 16, "shop::a", 0, 9.0)
    child = span("t" * 32, "b" * 16, "shop::b", 1, 3.0, parent="a" * 16)
    engine_call = {**span("t" * 32, "c" * 16, "state::set", 2, 1.0, parent="b" * 16), "service_name": "iii"}
    engine_call.update(name="call state::set", attributes=[])
    app_span = {**span("t" * 32, "d" * 16, "x", 3, 1.0, parent="a" * 16), "name": "GET", "attributes": []}
    for record in (child, engine_call, app_span, root, child):  # child again: counted once
        store.apply(Event(T0, "spans", [record]))
    assert [(i.function, i.worker, i.service) for i in store.invocations] == [
        ("shop::a", "shop-worker", "iii-python-sdk")
    ]
    assert {f: st.calls for f, st in store.fn_stats.items()} == {"shop::a": 1, "shop::b": 1, "state::set": 1}
    assert span_function({"name": "execute shop::a"}) == "shop::a"
    assert is_root_span({"parent_span_id": None}) and is_root_span({"parent_span_id": "0" * 16})
    assert not is_root_span({"parent_span_id": "a" * 16})
    # an invocation seen before its function was listed gets its worker when it is
    other = span("u" * 32, "e" * 16, "shop::late", 5, 1.0)
    store.apply(Event(T0, "spans", [other]))
    assert store.invocations[-1].worker == "" and store.invocations[-1].shown_worker == "iii-python-sdk"
    store.apply(
        Event(T0, "functions", {"functions": [{"function_id": "shop::late", "worker_name": "late-worker"}]})
    )
    assert store.invocations[-1].worker == "late-worker"


@pytest.mark.parametrize("root_first", [True, False])
def test_a_root_client_span_is_not_an_invocation_the_function_under_it_is(root_first: bool) -> None:
    """A worker's ``urlopen`` of an HTTP trigger: a root ``GET`` client span (application code),
    the function's ``execute`` span its child. The list shows the function, once, in either
    arrival order; its statistics count the call once."""
    store = Store()
    client = {**span("t" * 32, "a" * 16, "x", 0, 9.0), "name": "GET"}
    client["attributes"] = [["url.full", "http://127.0.0.1:3111/hello?name=zed"], ["status", 200]]
    hello = span("t" * 32, "b" * 16, "web::hello", 1, 3.0, parent="a" * 16)
    nested = span("t" * 32, "c" * 16, "web::inner", 2, 1.0, parent="b" * 16)
    order = [client, hello, nested] if root_first else [nested, hello, client]
    for record in [*order, hello, client]:  # seen again: still once
        store.apply(Event(T0, "spans", [record]))
    assert [(i.function, i.span_id) for i in store.invocations] == [("web::hello", "b" * 16)]
    assert {f: st.calls for f, st in store.fn_stats.items()} == {"web::hello": 1, "web::inner": 1}
    assert store.invocations_total == 1 and len(store.traces["t" * 32]) == 3


def test_channel_rows_from_the_engine_shape() -> None:
    """``engine::channels::list`` rows (docs/channels.md) have no state of their own: it comes from
    the sides; the owner is the creating worker's name."""
    store = Store()
    store.apply(Event(T0, "workers", {"workers": [{"id": "w-1", "name": "exporter"}]}))

    def side(state: str) -> dict[str, Any]:
        return {"state": state, "via": "socket" if state != "waiting" else None, "remote_address": None}

    base = {"buffer_size": 64, "created_at_ms": int(T0 * 1000), "owner": None, "owner_worker_id": "w-1"}
    rows = [
        {**base, "channel_id": "c1", "reader": side("waiting"), "writer": side("connected"), "messages": 2},
        {**base, "channel_id": "c2", "reader": side("connected"), "writer": side("connected"), "bytes": 10},
        {**base, "channel_id": "c3", "reader": side("connected"), "writer": side("done"), "ended": True},
        {**base, "channel_id": "c4", "reader": side("done"), "writer": side("done"), "error": "reader left"},
        {**base, "channel_id": "c5", "owner": "iii-http", "owner_worker_id": None, "reader": side("waiting")},
    ]
    store.apply(Event(T0, "channels", {"channels": rows, "count": 5}))
    cells = {r.key: r.cells for r in channel_rows(store)}
    assert {k: c[1:4] for k, c in cells.items()} == {
        "c1": ("waiting", "waiting", "connected"),
        "c2": ("open", "connected", "connected"),
        "c3": ("ended", "connected", "done"),
        "c4": ("broken", "done", "done"),
        "c5": ("waiting", "waiting", "-"),
    }
    assert cells["c1"][6] == "exporter" and cells["c5"][6] == "iii-http"
    assert cells["c1"][4] == "2" and cells["c2"][5] == "10B"
    # the creating worker disconnected: its last known name, marked; never seen: its id
    store.apply(Event(T0 + 1, "workers", {"workers": [{"id": "w-2", "name": "other"}]}))
    unknown = {**rows[0], "channel_id": "c6", "owner_worker_id": "w-9"}
    store.apply(Event(T0 + 1, "channels", {"channels": [rows[0], unknown], "count": 2}))
    cells = {r.key: r.cells for r in channel_rows(store)}
    assert cells["c1"][6] == "exporter (gone)" and cells["c6"][6] == "w-9"


def test_connection_states_and_stale_banner() -> None:
    store = Store()
    store.apply(Event(T0, "conn", {"state": "connected", "url": "ws://x"}))
    assert store.stale_since is None
    store.apply(Event(T0 + 5, "conn", {"state": "reconnecting"}))
    assert store.stale_since == T0 + 5
    store.apply(Event(T0 + 6, "conn", {"state": "connecting"}))
    assert store.stale_since == T0 + 5
    assert "stale since" in screen_text(store, "overview")
    store.apply(Event(T0 + 9, "conn", {"state": "connected"}))
    assert store.stale_since is None


def test_functions_group_and_hide_internal() -> None:
    store = Store()
    store.apply(
        Event(
            T0,
            "functions",
            [
                {"function_id": "a::x"},
                {"function_id": "a::y"},
                {"function_id": "engine::health::check"},
                {"function_id": "engine::queue::list_topics"},
                {"function_id": "hidden", "metadata": {"internal": True}},
            ],
        )
    )
    rows = function_rows(store)
    assert [r.key for r in rows] == ["a::x", "a::y", "engine::queue::list_topics"]
    assert rows[0].cells[0] == "a (2)" and rows[1].cells[0] == ""
    assert len(function_rows(store, show_internal=True)) == 5


def test_waterfall_tree_critical_path_and_bars() -> None:
    spans = [
        span("t" * 32, "root", "a", 0, 100.0),
        span("t" * 32, "c2", "c", 60, 40.0, parent="root"),
        span("t" * 32, "c1", "b", 10, 30.0, parent="root"),
        span("t" * 32, "g1", "d", 15, 10.0, parent="c1"),
        span("t" * 32, "orphan", "e", 5, None, parent="nope"),
    ]
    rows = waterfall_rows(spans)
    assert [(r.depth, r.span_id) for r in rows] == [
        (0, "root"),
        (1, "c1"),
        (2, "g1"),
        (1, "c2"),
        (0, "orphan"),
    ]
    assert {r.span_id for r in rows if r.critical} == {"root", "c2"}
    assert rows[-1].status == "running" and rows[-1].duration_ms is None
    assert bar(0, 100, 100, 10) == "█" * 10
    assert bar(50, 25, 100, 8) == "    ██  "
    assert bar(0, 1, 100, 10) == "▏" + " " * 9
    assert bar(0, None, 100, 6).startswith("▶…")
    assert len(bar(99, 50, 100, 10)) == 10


SCHEMA = {
    "type": "object",
    "required": ["name", "addr"],
    "$defs": {"Addr": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}},
    "properties": {
        "name": {"type": "string", "minLength": 2},
        "qty": {"type": "integer", "default": 1, "minimum": 1},
        "price": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
        "kind": {"enum": ["a", "b"], "default": "a"},
        "gift": {"type": "boolean", "default": False},
        "tags": {"type": "array", "items": {"type": "string"}},
        "addr": {"$ref": "#/$defs/Addr"},
    },
}


def test_schema_form_fields_validation_and_raw_roundtrip() -> None:
    specs = fields_from_schema(SCHEMA)
    assert [(s.key, s.kind, s.required) for s in specs] == [
        ("name", "string", True),
        ("qty", "integer", False),
        ("price", "number", False),
        ("kind", "enum", False),
        ("gift", "boolean", False),
        ("tags", "json", False),
        ("addr", "object", True),
    ]
    assert specs[2].nullable and specs[6].children[0].key == "addr.city"
    raw = initial_raw(specs)
    assert raw["qty"] == "1" and raw["kind"] == "a" and raw["gift"] is False
    value, errors = build_value(specs, raw)
    assert errors == {"name": "required", "addr.city": "required"}
    raw.update({"name": "x", "qty": "0", "tags": "[1,", "addr.city": "Oslo"})
    _, errors = build_value(specs, raw)
    assert set(errors) == {"name", "qty", "tags"}
    raw.update({"name": "pens", "qty": "2", "tags": '["a"]', "price": "2.5", "kind": "b", "gift": True})
    value, errors = build_value(specs, raw)
    assert errors == {}
    assert value == {
        "name": "pens",
        "qty": 2,
        "price": 2.5,
        "kind": "b",
        "gift": True,
        "tags": ["a"],
        "addr": {"city": "Oslo"},
    }
    back = raw_from_value(specs, value)
    assert build_value(specs, back) == (value, {})
    assert build_value(specs, {**raw, "kind": MISSING})[0].get("kind") is None


def test_schema_form_without_object_schema() -> None:
    for schema in (None, {}, {"type": "object"}, {"type": "array"}):
        specs = fields_from_schema(schema)
        assert len(specs) == 1 and specs[0].path == ()
    assert build_value(
        fields_from_schema({"type": "object"}), initial_raw(fields_from_schema({"type": "object"}))
    ) == (
        {},
        {},
    )
    assert build_value(fields_from_schema(None), {"": "[1, 2]"}) == ([1, 2], {})
    assert "(payload)" in build_value(fields_from_schema(None), {"": "{"})[1]


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz"])
async def test_session_roundtrip(tmp_path: Path, name: str) -> None:
    events = [
        Event(T0, "conn", {"state": "connected"}),
        Event(T0 + 1, "logs", {"logs": [{"body": "\udcff"}]}),
    ]
    path = tmp_path / name
    write_session(path, events, url="ws://x")
    header, back = read_session(path)
    assert header["url"] == "ws://x" and [e.kind for e in back] == ["conn", "logs"]
    source = ReplaySource(path, speed=0)
    seen: list[Event] = []
    await source.run(seen.append)
    assert len(seen) == 2 and source.clock.now() == T0 + 1
    with pytest.raises(PermissionError):
        await source.call("x", {})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"nope": 1}) + "\n")
    with pytest.raises(SessionError):
        read_session(bad)


def test_overview_counts_are_pluralised() -> None:
    store = Store()
    store.apply(Event(T0, "queues", [{"name": "receipts", "broker_type": "builtin", "subscriber_count": 1}]))
    store.apply(Event(T0, "dlq", [{"topic": "receipts", "broker_type": "builtin", "message_count": 0}]))
    lines = dict(overview_lines(store))
    assert lines["queues"] == "1 topic, 1 dead-letter topic"
    store.apply(Event(T0, "queues", [{"name": "a"}, {"name": "b"}]))
    store.apply(Event(T0, "dlq", []))
    assert dict(overview_lines(store))["queues"] == "2 topics, 0 dead-letter topics"
    assert [plural(n, "type") for n in (0, 1, 12)] == ["0 types", "1 type", "12 types"]


def _metrics(t: float, by_function: dict[str, int], own: dict[str, int] | None = None) -> Event:
    """An ``engine::metrics::list`` answer as the source emits it (``timestamp`` in ms)."""
    total = sum(by_function.values())
    data: dict[str, Any] = {
        "engine_metrics": {"invocations": {"by_function": by_function, "total": total, "error": 0}},
        "timestamp": int(t * 1000),
    }
    if own is not None:
        data["own_calls"] = own
    return Event(t, "metrics", data)


def test_rates_and_counts_come_from_the_engine_metrics() -> None:
    """invocations/s and CALLS are the engine's counts (whatever the spans seen): engine::* and
    internal functions and the dashboard's own reads are left out; a restart starts again."""
    store = Store()
    internal = {"function_id": "iii-tui::ab::trace", "metadata": {"internal": True}}
    store.apply(Event(T0, "functions", {"functions": [{"function_id": "shop::a"}, internal]}))
    # one span seen, before any metrics: the count and rate come from the spans
    store.apply(Event(T0, "spans", [span("t" * 32, "a" * 16, "shop::a", 0, 5.0)]))
    assert store.calls_of("shop::a") == 1 and store.metrics_rate() is None
    store.apply(_metrics(T0, {"shop::a": 100, "engine::workers::list": 7, "state::list_groups": 3}, {}))
    assert store.calls_of("shop::a") == 100 and store.calls_of("shop::b") == 0
    assert store.metrics_rate() is None  # one read: no rate yet
    later = {
        "shop::a": 300,
        "shop::b": 50,
        "engine::workers::list": 900,  # the dashboard's own polls (engine::*)
        "iii-tui::ab::trace": 400,  # a push handler (metadata.internal)
        "state::list_groups": 23,  # 20 of them the dashboard's own reads
    }
    store.apply(_metrics(T0 + 2, later, {"state::list_groups": 20}))
    assert store.calls_of("state::list_groups") == 3
    assert store.metrics_rate() == pytest.approx((200 + 50) / 2)
    assert store.rate() == store.metrics_rate()  # the metrics win over the one span seen
    assert store.stream_rate() == pytest.approx(0.1)
    (row,) = [r for r in function_rows(store) if r.key == "shop::a"]
    assert row.cells[3] == "300" and row.fields["calls"] == 300
    assert dict(overview_lines(store))["invocations/s"] == "125.0"
    # a window of reads: the oldest read within 10 s of the newest
    store.apply(_metrics(T0 + 12, {**later, "shop::a": 1300}, {"state::list_groups": 20}))
    assert store.metrics_rate() == pytest.approx(1000 / 10)
    # an engine restart (its counters start again): no negative rate, a rate again after 2 reads
    store.apply(_metrics(T0 + 14, {"shop::a": 10}))
    assert store.metrics_rate() is None
    store.apply(_metrics(T0 + 16, {"shop::a": 30}))
    assert store.metrics_rate() == pytest.approx(10.0)


def test_sampling_is_reported_over_a_window() -> None:
    store = Store()
    assert sampling_note(store) is None and not store.sampling_in().active
    store.apply(Event(T0, "sampling", {"notified": 1200, "fetched": 200, "skipped": 1000}))
    store.apply(Event(T0 + 0.25, "sampling", {"notified": 800, "fetched": 200, "skipped": 600}))
    store.apply(Event(T0 + 0.5, "sampling", {"notified": 50, "fetched": 50, "skipped": 0}))
    sampled = store.sampling_in()
    assert (sampled.notified, sampled.fetched, sampled.skipped, sampled.active) == (2050, 450, 1600, True)
    assert sampling_note(store) == "sampling: showing newest 450 of 2,050 new traces in the last 5 s"
    store.apply(Event(T0 + 0.5, "spans", [span("t" * 32, "a" * 16, "shop::a", 0, 5.0)]))
    lines = dict(overview_lines(store))
    assert lines["traces"] == sampling_note(store)
    assert lines["error %"] == "0.0% (of sampled traces)" and lines["p95"].endswith("(of sampled traces)")
    # every trace fetched: no note; old sampling falls out of the window
    store.tick(T0 + 5.3)
    assert store.sampling_in().notified == 50 and sampling_note(store) is None
    assert "traces" not in dict(overview_lines(store))
    store.apply(Event(T0 + 5.4, "sampling", {"notified": "x", "fetched": None, "skipped": -3}))  # malformed
    assert store.sampling_in().notified == 50 and store.traces_skipped == 1600


def test_store_changed_messages_coalesce_with_their_sections() -> None:
    older, newer = StoreChanged(frozenset({"logs", "clock"})), StoreChanged(frozenset({"invocations"}))
    assert older.can_replace(newer)
    assert newer.sections == {"logs", "clock", "invocations"}
