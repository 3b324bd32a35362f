"""The ``http`` built-in end to end: an HTTP client → the engine → a worker → the response.

Real engine processes on 127.0.0.1, workers on our SDK (and the official ``iii`` client where
marked), requests with aiohttp's client. Facts: protocol.md §6.6, golden frames E07, H01-H03.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from http_helpers import Reply, fetch, unique, wait_routes, write_config
from support.waiting import wait_for_async

from iii_typed import III, InitOptions, register_worker
from iii_typed.engine.process import EngineProcess
from tests.support.official import shutdown_official

os.environ.setdefault("OTEL_ENABLED", "false")
#: The official client deprecates register_trigger in favour of observe(); http still uses it.
pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")

CHANNEL_KEYS = ("request_body", "response")
H02 = {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
H03 = {"error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"}, "skipped": True}


def plain(data: Any) -> Any:
    """The payload without the channel refs (which the SDK turns into live objects)."""
    return {key: value for key, value in data.items() if key not in CHANNEL_KEYS}


@pytest.fixture(scope="module")
def http_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    tmp = tmp_path_factory.mktemp("http-engine")
    config = write_config(
        tmp / "engine.toml",
        {
            "http": {
                "default_timeout": 10000,
                "max_body_bytes": 4096,
                "cors": {"allowed_origins": ["http://app.test"]},
            }
        },
    )
    proc = EngineProcess(config=config, log_path=tmp / "engine.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def worker(http_engine: EngineProcess) -> Iterator[III]:
    client = register_worker(http_engine.url, InitOptions(worker_name=unique("http-tests")))
    yield client
    client.shutdown()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


Serve = Callable[..., Any]


@pytest.fixture
def serve(worker: III) -> Iterator[Serve]:
    """``await serve(handler, "/path", "POST", **config)`` → the route's trigger, live."""
    triggers: list[Any] = []

    async def factory(handler: Callable[..., Any], api_path: str, method: str = "GET", **config: Any) -> Any:
        function_id = unique("http::fn")
        worker.register_function(function_id, handler)
        trigger = worker.register_trigger(
            {
                "type": "http",
                "function_id": function_id,
                "config": {"api_path": api_path, "http_method": method, **config},
            }
        )
        triggers.append(trigger)
        await wait_routes(worker, [trigger.id])
        return trigger

    yield factory
    for trigger in triggers:
        trigger.unregister()


def echo(data: Any) -> Any:
    return {"status_code": 200, "body": plain(data)}


# -- payload, methods, routing -------------------------------------------------------------------
async def test_get_payload_matches_e07(http_engine, serve, session):
    base = unique("/users")
    await serve(echo, f"{base}/:id")
    reply = await fetch(
        session, "GET", f"{http_engine.http_url}{base}/42?verbose=1&k=a&k=b", headers={"X-Custom": "v"}
    )
    assert reply.status == 200
    payload = reply.json()
    assert sorted(payload) == ["body", "headers", "method", "path", "path_params", "query_params", "trigger"]
    assert payload["body"] is None
    assert payload["method"] == "GET"
    assert payload["path"] == f"{base}/:id"
    assert payload["path_params"] == {"id": "42"}
    assert payload["query_params"] == {"verbose": "1", "k": "b"}  # last value wins
    assert payload["trigger"] == {"method": "GET", "path": f"{base}/:id", "type": "http"}
    assert payload["headers"]["x-custom"] == "v"
    assert all(name == name.lower() for name in payload["headers"])
    assert payload["headers"]["host"].startswith("127.0.0.1:")


async def test_post_json_body_is_parsed(http_engine, serve, session):
    path = unique("/json")
    await serve(echo, path, "POST")
    reply = await fetch(session, "POST", http_engine.http_url + path, json={"a": [1, 2], "b": None})
    assert reply.status == 200
    assert reply.json()["body"] == {"a": [1, 2], "b": None}
    assert reply.headers["Content-Type"] == "application/json"


async def test_json_content_type_with_charset_is_parsed(http_engine, serve, session):
    path = unique("/charset")
    await serve(echo, path, "POST")
    reply = await fetch(
        session,
        "POST",
        http_engine.http_url + path,
        data='{"x":"é"}'.encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert reply.json()["body"] == {"x": "é"}


async def test_non_json_body_is_not_parsed(http_engine, serve, session):
    path = unique("/text")
    await serve(echo, path, "POST")
    reply = await fetch(
        session, "POST", http_engine.http_url + path, data=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert reply.status == 200
    assert reply.json()["body"] is None


async def test_malformed_json_body_gives_null_and_the_engine_keeps_serving(http_engine, serve, session):
    path = unique("/bad-json")
    await serve(echo, path, "POST")
    url = http_engine.http_url + path
    reply = await fetch(session, "POST", url, data=b'{"a": ', headers={"Content-Type": "application/json"})
    assert reply.status == 200
    assert reply.json()["body"] is None
    assert (await fetch(session, "POST", url, json={"ok": True})).json()["body"] == {"ok": True}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_each_method_routes_to_its_own_binding(http_engine, serve, session, method):
    path = unique("/methods")
    await serve(lambda data: {"body": {"method": data["method"], "mine": method}}, path, method)
    await serve(lambda data: {"body": {"method": data["method"], "mine": "GET"}}, path, "GET")
    reply = await fetch(session, method, http_engine.http_url + path)
    assert reply.status == 200
    assert reply.json() == {"method": method, "mine": method}


async def test_method_is_case_insensitive_in_the_config(http_engine, serve, session):
    path = unique("/lower")
    await serve(echo, path, "post")
    reply = await fetch(session, "POST", http_engine.http_url + path)
    assert reply.status == 200
    assert reply.json()["trigger"]["method"] == "POST"


async def test_head_uses_the_get_route_without_a_body(http_engine, serve, session):
    path = unique("/head")
    await serve(lambda data: {"body": {"seen": data["method"]}}, path)
    reply = await fetch(session, "HEAD", http_engine.http_url + path)
    assert reply.status == 200
    assert reply.body == b""


async def test_unknown_route_and_wrong_method_are_404_envelopes(http_engine, serve, session):
    path = unique("/only-get")
    await serve(echo, path)
    missing = await fetch(session, "GET", http_engine.http_url + unique("/missing"))
    assert missing.status == 404
    assert missing.json() == H02
    wrong = await fetch(session, "POST", http_engine.http_url + path)
    assert wrong.status == 404
    assert wrong.json() == H02


async def test_literal_segment_wins_over_a_parameter(http_engine, serve, session):
    base = unique("/items")
    await serve(lambda data: {"body": {"route": "param", "id": data["path_params"]["id"]}}, f"{base}/:id")
    await serve(lambda data: {"body": {"route": "literal"}}, f"{base}/special")
    assert (await fetch(session, "GET", f"{http_engine.http_url}{base}/special")).json() == {
        "route": "literal"
    }
    assert (await fetch(session, "GET", f"{http_engine.http_url}{base}/7")).json() == {
        "route": "param",
        "id": "7",
    }


async def test_several_params_percent_decoding_and_trailing_slash(http_engine, serve, session):
    base = unique("/orgs")
    await serve(echo, f"{base}/:org/repos/{{repo}}/")
    reply = await fetch(session, "GET", f"{http_engine.http_url}{base}/acme%20inc/repos/a%2Fb/")
    assert reply.status == 200
    assert reply.json()["path_params"] == {"org": "acme inc", "repo": "a/b"}


# -- buffered responses (option A) -----------------------------------------------------------------
async def test_status_code_and_headers_map_h01(http_engine, serve, session):
    path = unique("/created")
    await serve(
        lambda data: {
            "status_code": 201,
            "headers": {"Content-Type": "application/json", "X-Id": "123"},
            "body": {"id": "123"},
        },
        path,
        "POST",
    )
    reply = await fetch(session, "POST", http_engine.http_url + path)
    assert reply.status == 201
    assert reply.headers["X-Id"] == "123"
    assert reply.json() == {"id": "123"}


async def test_headers_as_a_list_of_lines(http_engine, serve, session):
    path = unique("/header-lines")
    await serve(
        lambda data: {"status_code": 202, "headers": ["X-A: 1", "X-B: two words"], "body": None}, path
    )
    reply = await fetch(session, "GET", http_engine.http_url + path)
    assert reply.status == 202
    assert (reply.headers["X-A"], reply.headers["X-B"]) == ("1", "two words")
    assert reply.body == b"null"


@pytest.mark.parametrize(
    ("result", "content_type", "body"),
    [
        ({"headers": {"Content-Type": "text/plain"}, "body": "héllo"}, "text/plain", "héllo".encode()),
        ({"headers": {"content-type": "text/csv"}, "body": None}, "text/csv", b""),
        (
            {"headers": {"Content-Type": "text/plain"}, "body": {"b": 1, "a": 2}},
            "text/plain",
            b'{"a":2,"b":1}',
        ),
        ({"status_code": 200}, "application/json", b"{}"),
        ({"body": "text"}, "application/json", b'"text"'),
    ],
    ids=["string-raw", "null-empty", "object-as-json-text", "default-body", "string-without-type"],
)
async def test_body_encoding_rules(http_engine, serve, session, result, content_type, body):
    path = unique("/encoding")
    await serve(lambda data: result, path)
    reply = await fetch(session, "GET", http_engine.http_url + path)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith(content_type)
    assert reply.body == body


async def test_handler_error_is_a_500_with_its_code_and_message(http_engine, serve, session):
    path = unique("/boom")

    def boom(data: Any) -> Any:
        raise ValueError("kaboom")

    await serve(boom, path)
    reply = await fetch(session, "GET", http_engine.http_url + path)
    assert reply.status == 500
    assert reply.json() == {"error": {"code": "invocation_failed", "message": "kaboom"}}


async def test_invalid_handler_results_are_500_and_the_engine_keeps_serving(http_engine, serve, session):
    bad_status = unique("/bad-status")
    not_object = unique("/not-object")
    await serve(lambda data: {"status_code": 99}, bad_status)
    await serve(lambda data: [1, 2, 3], not_object)
    interim = unique("/interim")
    await serve(lambda data: {"status_code": 101, "body": {"x": 1}}, interim)
    for path, fragment in (
        (bad_status, "between 200 and 599"),
        (not_object, "must return an object"),
        (interim, "a 1xx is an interim response"),  # sent as is, the client waited forever
    ):
        reply = await fetch(session, "GET", http_engine.http_url + path)
        assert reply.status == 500
        error = reply.json()["error"]
        assert error["code"] == "INVALID_RESPONSE"
        assert fragment in error["message"]
    ok = unique("/still-ok")
    await serve(echo, ok)
    assert (await fetch(session, "GET", http_engine.http_url + ok)).status == 200


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"X-A": "a\x00b"}, "control character"),
        ({"X-A": "a\x1bb"}, "control character"),
        ({"X\x00A": "v"}, "invalid header name"),
        ({"X(A)": "v"}, "invalid header name"),
        (["X\x7fA: v"], "invalid header name"),
        (["X-A: v\x00"], "control character"),
    ],
)
async def test_header_names_and_values_the_http_server_cannot_write_are_500s(
    http_engine, serve, session, headers, fragment
):
    """A NUL (or another control character) in a header value or a non-token name passed the
    checks and made the HTTP server drop the connection without any response."""
    path = unique("/bad-header")
    await serve(lambda data: {"status_code": 200, "headers": headers, "body": "x"}, path)
    reply = await fetch(session, "GET", http_engine.http_url + path)
    assert reply.status == 500
    error = reply.json()["error"]
    assert error["code"] == "INVALID_RESPONSE" and fragment in error["message"]
    tabbed = unique("/tabbed-header")
    await serve(lambda data: {"status_code": 200, "headers": {"X-Tab": "a\tb"}, "body": "x"}, tabbed)
    ok = await fetch(session, "GET", http_engine.http_url + tabbed)
    assert ok.status == 200 and ok.headers["X-Tab"] == "a\tb"


async def test_metadata_sidecar_reaches_the_handler(http_engine, worker, session):
    path = unique("/meta")
    function_id = unique("http::meta")
    worker.register_function(function_id, lambda data, metadata: {"body": {"metadata": metadata}})
    trigger = worker.register_trigger(
        {
            "type": "http",
            "function_id": function_id,
            "config": {"api_path": path},
            "metadata": {"tenant": "acme"},
        }
    )
    try:
        await wait_routes(worker, [trigger.id])
        reply = await fetch(session, "GET", http_engine.http_url + path)
        assert reply.json() == {"metadata": {"tenant": "acme"}}
    finally:
        trigger.unregister()


async def test_durable_binding_without_its_function_is_a_500_function_not_found(http_engine, worker, session):
    path = unique("/orphan")
    missing = unique("http::missing")
    created = await worker.trigger_async(
        {
            "function_id": "engine::register_trigger",
            "payload": {"trigger_type": "http", "function_id": missing, "config": {"api_path": path}},
        }
    )
    try:
        await wait_routes(worker, [created["id"]])
        reply = await fetch(session, "GET", http_engine.http_url + path)
        assert reply.status == 500
        assert reply.json() == {
            "error": {
                "code": "function_not_found",
                "message": f"Function {missing} not found in namespace default",
            }
        }
    finally:
        await worker.trigger_async(
            {"function_id": "engine::unregister_trigger", "payload": {"id": created["id"]}}
        )


# -- conditions and middleware -------------------------------------------------------------------
async def test_condition_false_is_422_h03_and_true_runs_the_handler(http_engine, worker, serve, session):
    condition_id = unique("http::cond")
    seen: list[Any] = []

    def condition(data: Any) -> bool:
        seen.append(data)
        return data["query_params"].get("allow") == "yes"

    worker.register_function(condition_id, condition)
    path = unique("/guarded")
    await serve(echo, path, condition_function_id=condition_id)
    refused = await fetch(session, "GET", http_engine.http_url + path + "?allow=no")
    assert refused.status == 422
    assert refused.json() == H03
    allowed = await fetch(session, "GET", http_engine.http_url + path + "?allow=yes")
    assert allowed.status == 200
    assert not any(key in seen[0] for key in CHANNEL_KEYS)  # the condition gets no channel refs
    assert seen[0]["path"] == path


async def test_condition_error_is_a_500(http_engine, worker, serve, session):
    condition_id = unique("http::cond-err")

    def condition(data: Any) -> bool:
        raise RuntimeError("condition broke")

    worker.register_function(condition_id, condition)
    path = unique("/cond-err")
    await serve(echo, path, condition_function_id=condition_id)
    reply = await fetch(session, "GET", http_engine.http_url + path)
    assert reply.status == 500
    assert reply.json() == {"error": {"code": "invocation_failed", "message": "condition broke"}}


async def test_route_middleware_respond_and_continue(http_engine, worker, serve, session):
    seen: list[Any] = []

    def auth(data: Any) -> Any:
        seen.append(data)
        if data["request"]["headers"].get("authorization") == "Bearer ok":
            return {"action": "continue"}
        return {"action": "respond", "response": {"status_code": 401, "body": {"error": "unauthorized"}}}

    auth_id = unique("http::auth")
    worker.register_function(auth_id, auth)
    base = unique("/private")
    await serve(echo, f"{base}/:id", middleware_function_ids=[auth_id])
    denied = await fetch(session, "GET", f"{http_engine.http_url}{base}/9?q=1")
    assert denied.status == 401
    assert denied.json() == {"error": "unauthorized"}
    allowed = await fetch(
        session, "GET", f"{http_engine.http_url}{base}/9", headers={"Authorization": "Bearer ok"}
    )
    assert allowed.status == 200
    assert allowed.json()["path_params"] == {"id": "9"}
    first = seen[0]
    assert first["context"] == {} and first["phase"] == "preHandler"
    assert sorted(first["request"]) == ["headers", "method", "path_params", "query_params"]
    assert first["request"]["method"] == "GET"
    assert first["request"]["path_params"] == {"id": "9"}
    assert first["request"]["query_params"] == {"q": "1"}


async def test_middleware_errors_and_bad_results_are_500s(http_engine, worker, serve, session):
    broken = unique("http::mw-broken")
    vague = unique("http::mw-vague")

    def fails(data: Any) -> Any:
        raise PermissionError("no entry")

    worker.register_function(broken, fails)
    worker.register_function(vague, lambda data: {"action": "maybe"})
    first = unique("/mw-broken")
    second = unique("/mw-vague")
    await serve(echo, first, middleware_function_ids=[broken])
    await serve(echo, second, middleware_function_ids=[vague])
    reply = await fetch(session, "GET", http_engine.http_url + first)
    assert reply.status == 500
    assert reply.json() == {"error": {"code": "invocation_failed", "message": "no entry"}}
    reply = await fetch(session, "GET", http_engine.http_url + second)
    assert reply.status == 500
    assert reply.json()["error"]["code"] == "INVALID_MIDDLEWARE_RESPONSE"


# -- bindings: conflicts, replacement, removal, bad configs ------------------------------------------
async def test_route_conflict_is_refused_on_the_handle(http_engine, worker, serve, session):
    base = unique("/conflict")
    await serve(echo, f"{base}/:id")
    function_id = unique("http::conflict")
    worker.register_function(function_id, echo)
    clash = worker.register_trigger(
        {"type": "http", "function_id": function_id, "config": {"api_path": f"{base}/:other"}}
    )
    error = await asyncio.to_thread(clash.wait_for_error, 5)
    assert error is not None and error.code == "trigger_registration_failed"
    assert "route conflict" in error.message
    assert (await fetch(session, "GET", f"{http_engine.http_url}{base}/1")).json()["path_params"] == {
        "id": "1"
    }


async def test_same_method_and_path_replaces_and_unregister_uncovers(http_engine, serve, session):
    path = unique("/replace")
    await serve(lambda data: {"body": "first"}, path)
    second = await serve(lambda data: {"body": "second"}, path)
    url = http_engine.http_url + path
    assert (await fetch(session, "GET", url)).json() == "second"
    second.unregister()

    async def first_again() -> bool:
        return (await fetch(session, "GET", url)).json() == "first"

    await wait_for_async(first_again, what="the earlier binding serves again")


async def test_unregistered_route_is_404(http_engine, serve, session):
    path = unique("/gone")
    trigger = await serve(echo, path)
    url = http_engine.http_url + path
    assert (await fetch(session, "GET", url)).status == 200
    trigger.unregister()

    async def gone() -> bool:
        return (await fetch(session, "GET", url)).status == 404

    await wait_for_async(gone, what="the route disappears")


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "api_path is required"),
        ({"api_path": "/x", "http_method": "FETCH"}, "not supported"),
        ({"api_path": "/x", "middleware_function_ids": "one"}, "middleware_function_ids"),
    ],
    ids=["missing-api-path", "bad-method", "bad-middleware"],
)
async def test_invalid_trigger_configs_are_refused(worker, config, fragment):
    function_id = unique("http::bad-config")
    worker.register_function(function_id, echo)
    trigger = worker.register_trigger({"type": "http", "function_id": function_id, "config": config})
    error = await asyncio.to_thread(trigger.wait_for_error, 5)
    assert error is not None and error.code == "trigger_registration_failed"
    assert fragment in error.message


# -- limits ---------------------------------------------------------------------------------------
async def test_oversize_body_is_413_and_the_engine_keeps_serving(http_engine, serve, session):
    path = unique("/upload")
    await serve(echo, path, "POST")
    url = http_engine.http_url + path
    reply = await fetch(
        session, "POST", url, data=b"x" * 5000, headers={"Content-Type": "application/octet-stream"}
    )
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert (await fetch(session, "POST", url, json={"small": True})).status == 200


async def test_cors_preflight_and_allow_origin(http_engine, serve, session):
    path = unique("/cors")
    await serve(echo, path, "POST")
    url = http_engine.http_url + path
    preflight = await fetch(
        session,
        "OPTIONS",
        url,
        headers={
            "Origin": "http://app.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://app.test"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = await fetch(session, "POST", url, headers={"Origin": "http://app.test"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://app.test"
    other = await fetch(session, "POST", url, headers={"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in other.headers


# -- timeouts, concurrency, global middleware (engines of their own) ---------------------------------
@pytest.fixture
def short_engine(engine_factory: Callable[..., EngineProcess], tmp_path: Path) -> EngineProcess:
    config = write_config(
        tmp_path / "short.toml", {"http": {"default_timeout": 300, "concurrency_request_limit": 1}}
    )
    return engine_factory(config=config)


async def test_slow_handler_is_504_then_slow_middleware_is_middleware_timeout(short_engine, session):
    release = threading.Event()

    def slow(data: Any) -> Any:
        release.wait(10)
        return {"body": "late"}

    client = register_worker(short_engine.url, InitOptions(worker_name=unique("slow")))
    try:
        client.register_function("slow::handler", slow)
        client.register_function("slow::mw", lambda data: (release.wait(10), {"action": "continue"})[1])
        client.register_function("fast::handler", lambda data: {"body": "quick"})
        triggers = [
            client.register_trigger(
                {"type": "http", "function_id": "slow::handler", "config": {"api_path": "/slow"}}
            ),
            client.register_trigger(
                {
                    "type": "http",
                    "function_id": "fast::handler",
                    "config": {"api_path": "/guarded", "middleware_function_ids": ["slow::mw"]},
                }
            ),
            client.register_trigger(
                {"type": "http", "function_id": "fast::handler", "config": {"api_path": "/fast"}}
            ),
        ]
        await wait_routes(client, [t.id for t in triggers])
        slow_reply = await fetch(session, "GET", short_engine.http_url + "/slow")
        assert slow_reply.status == 504
        assert slow_reply.body == b""
        guarded = await fetch(session, "GET", short_engine.http_url + "/guarded")
        assert guarded.status == 504
        assert guarded.json() == {"error": {"code": "MIDDLEWARE_TIMEOUT", "message": "Middleware timeout"}}
        release.set()
        assert (await fetch(session, "GET", short_engine.http_url + "/fast")).json() == "quick"
    finally:
        release.set()
        client.shutdown()


async def test_requests_over_the_concurrency_limit_wait_for_a_slot(short_engine, session):
    release = threading.Event()
    starts: list[float] = []
    lock = threading.Lock()

    def hold(data: Any) -> Any:
        with lock:
            starts.append(time.monotonic())
        release.wait(10)
        return {"body": "held"}

    client = register_worker(short_engine.url, InitOptions(worker_name=unique("hold")))
    try:
        client.register_function("hold::handler", hold)
        trigger = client.register_trigger(
            {"type": "http", "function_id": "hold::handler", "config": {"api_path": "/hold"}}
        )
        await wait_routes(client, [trigger.id])
        # concurrency_request_limit = 1: the second request, sent once the first one's handler
        # runs, waits until the first one's 300 ms deadline frees the slot, then gets its own
        # handler call (and its own 504).
        first = asyncio.ensure_future(fetch(session, "GET", short_engine.http_url + "/hold"))
        await wait_for_async(lambda: len(starts) == 1, what="the first handler runs")
        second = await fetch(session, "GET", short_engine.http_url + "/hold")
        first = await first
        assert (first.status, second.status) == (504, 504)
        assert len(starts) == 2
        assert starts[1] - starts[0] >= 0.25
    finally:
        release.set()
        client.shutdown()


async def test_global_middleware_runs_by_priority(engine_factory, tmp_path, session):
    config = write_config(
        tmp_path / "mw.toml",
        {},
        text=(
            '[[http.middleware]]\nfunction_id = "mw::second"\npriority = 20\n\n'
            '[[http.middleware]]\nfunction_id = "mw::first"\npriority = 10\n'
        ),
    )
    proc = engine_factory(config=config)
    order: list[str] = []

    def first(data: Any) -> Any:
        order.append("first")
        if data["request"]["query_params"].get("stop") == "1":
            return {
                "action": "respond",
                "response": {"status_code": 418, "headers": {"X-By": "first"}, "body": "teapot"},
            }
        return {"action": "continue"}

    def second(data: Any) -> Any:
        order.append("second")
        return {"action": "continue"}

    client = register_worker(proc.url, InitOptions(worker_name=unique("mw")))
    try:
        client.register_function("mw::first", first)
        client.register_function("mw::second", second)
        client.register_function("mw::handler", lambda data: {"body": "handled"})
        trigger = client.register_trigger(
            {"type": "http", "function_id": "mw::handler", "config": {"api_path": "/mw"}}
        )
        await wait_routes(client, [trigger.id])
        stopped = await fetch(session, "GET", proc.http_url + "/mw?stop=1")
        assert (stopped.status, stopped.headers["X-By"], stopped.json()) == (418, "first", "teapot")
        assert order == ["first"]
        passed = await fetch(session, "GET", proc.http_url + "/mw")
        assert passed.json() == "handled"
        assert order == ["first", "first", "second"]
        # Unmatched routes are answered before any middleware runs.
        assert (await fetch(session, "GET", proc.http_url + "/nowhere")).status == 404
        assert order == ["first", "first", "second"]
    finally:
        client.shutdown()


# -- the official iii client as the worker -------------------------------------------------------------
async def test_official_iii_worker_serves_http_routes(http_engine, session):
    iii = pytest.importorskip("iii")
    client = iii.register_worker(http_engine.url, iii.InitOptions(worker_name=unique("official-http")))
    base = unique("/official")
    try:

        def handler(data: Any) -> Any:
            return {
                "status_code": 201 if data["method"] == "POST" else 200,
                "headers": {"X-Worker": "iii-sdk"},
                "body": {
                    "id": data["path_params"]["id"],
                    "body": data["body"],
                    "query": data["query_params"],
                },
            }

        client.register_function("official::http", handler)
        for method in ("GET", "POST"):
            client.register_trigger(
                {
                    "type": "http",
                    "function_id": "official::http",
                    "config": {"api_path": f"{base}/:id", "http_method": method},
                }
            )

        async def live() -> Reply | None:
            reply = await fetch(session, "POST", f"{http_engine.http_url}{base}/5?x=1", json={"n": 1})
            return reply if reply.status != 404 else None

        reply = await wait_for_async(live, timeout=10, what="the official worker's route is live")
        assert reply.status == 201
        assert reply.headers["X-Worker"] == "iii-sdk"
        assert reply.json() == {"id": "5", "body": {"n": 1}, "query": {"x": "1"}}
        got = await fetch(session, "GET", f"{http_engine.http_url}{base}/6")
        assert (got.status, got.json()["id"]) == (200, "6")
    finally:
        shutdown_official(client)
