"""HTTP-invoked functions (``iii-http-functions``): the engine calls a URL for each invocation.

A local aiohttp server stands in for the function's endpoint and records what the engine sends.
Facts: protocol.md §2.1 (``invocation``), §6.7, golden frame X07.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from http_helpers import unique, write_config
from support.waiting import wait_for, wait_for_async

from iii_typed import (
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationConfig,
    InitOptions,
    InvocationError,
    register_worker,
)
from iii_typed.engine.process import EngineProcess
from tests.support.official import shutdown_official

os.environ.setdefault("OTEL_ENABLED", "false")

SECRETS = {"TEST_HMAC_SECRET": "s3cret-hmac", "TEST_BEARER_TOKEN": "tok-123", "TEST_API_KEY": "key-456"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    """A local HTTP server: ``responses[path]`` decides the answer, ``seen`` records requests."""

    url: str
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    routes: dict[str, Callable[[web.Request], Any]] = {
        "/json": lambda parsed: web.json_response({"ok": True, "echo": parsed}),
        "/empty": lambda parsed: web.Response(status=204),
        "/text": lambda parsed: web.Response(text="not json", content_type="text/plain"),
        "/error-body": lambda parsed: web.json_response(
            {"error": {"code": "E_BAD", "message": "bad thing"}}, status=400
        ),
        "/error-plain": lambda parsed: web.Response(status=503, text="down"),
        "/redirect": lambda parsed: web.json_response(
            {"moved": True}, status=302, headers={"Location": "/json"}
        ),
    }
    holder: dict[str, Endpoint] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        holder["endpoint"].seen.append(Seen(request.method, request.path, dict(request.headers), body))
        if request.path == "/slow":
            await asyncio.wait_for(holder["endpoint"].release.wait(), 10)
            return web.json_response({"late": True})
        route = routes.get(request.path)
        if route is None:
            return web.Response(status=404)
        response: web.StreamResponse = route(json.loads(body) if body else None)
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    holder["endpoint"] = Endpoint(url=f"http://127.0.0.1:{port}")
    yield holder["endpoint"]
    holder["endpoint"].release.set()
    await runner.cleanup()


@pytest.fixture(scope="module")
def functions_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    tmp = tmp_path_factory.mktemp("http-functions")
    config = write_config(tmp / "engine.toml", {"http-functions": {"enabled": True}})
    proc = EngineProcess(config=config, env=SECRETS, log_path=tmp / "engine.log").start()
    yield proc
    proc.stop()


@pytest.fixture
def client(functions_engine: EngineProcess) -> Iterator[Any]:
    worker = register_worker(functions_engine.url, InitOptions(worker_name=unique("http-fn")))
    yield worker
    worker.shutdown()


async def call(client: Any, function_id: str, payload: Any = None, timeout_ms: int = 5000) -> Any:
    return await client.trigger_async(
        {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms}
    )


async def wait_registered(client: Any, function_id: str) -> None:
    async def listed() -> bool:
        result = await client.trigger_async(
            {"function_id": "engine::functions::list", "payload": {"prefix": function_id}}
        )
        return any(row["function_id"] == function_id for row in result["functions"])

    await wait_for_async(listed, what=f"{function_id} is registered")


def verify_signature(secret: str, seen: Seen) -> bool:
    timestamp = seen.headers["x-iii-Timestamp"]
    message = timestamp.encode() + b":" + base64.b64encode(seen.body)
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return seen.headers["x-iii-Signature"] == f"sha256={expected}"


async def test_hmac_signed_request_with_the_documented_headers(client, endpoint):
    function_id = unique("remote::hmac")
    client.register_function(
        function_id,
        HttpInvocationConfig(
            url=endpoint.url + "/json",
            headers={"X-Extra": "yes"},
            auth=HttpAuthHmac(secret_key="TEST_HMAC_SECRET"),
        ),
    )
    await wait_registered(client, function_id)
    result = await call(client, function_id, {"order": 7, "items": ["a"]})
    assert result["ok"] is True
    assert result["echo"]["order"] == 7 and result["echo"]["items"] == ["a"]
    [seen] = endpoint.seen
    assert seen.method == "POST"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Extra"] == "yes"
    assert seen.headers["x-iii-Function-Path"] == function_id
    uuid.UUID(seen.headers["x-iii-Invocation-ID"])
    assert abs(int(seen.headers["x-iii-Timestamp"]) - time.time()) < 30
    assert verify_signature(SECRETS["TEST_HMAC_SECRET"], seen)
    assert not verify_signature("wrong-secret", seen)
    assert json.loads(seen.body)["order"] == 7


async def test_bearer_and_api_key_auth(client, endpoint):
    bearer = unique("remote::bearer")
    api_key = unique("remote::apikey")
    client.register_function(
        bearer,
        HttpInvocationConfig(url=endpoint.url + "/json", auth=HttpAuthBearer(token_key="TEST_BEARER_TOKEN")),
    )
    client.register_function(
        api_key,
        HttpInvocationConfig(
            url=endpoint.url + "/json",
            method="PUT",
            auth=HttpAuthApiKey(header="X-Api-Key", value_key="TEST_API_KEY"),
        ),
    )
    await wait_registered(client, bearer)
    await wait_registered(client, api_key)
    await call(client, bearer, {"n": 1})
    await call(client, api_key, {"n": 2})
    first, second = endpoint.seen
    assert first.headers["Authorization"] == "Bearer tok-123"
    assert "x-iii-Signature" not in first.headers
    assert second.method == "PUT"
    assert second.headers["X-Api-Key"] == "key-456"
    assert "Authorization" not in second.headers


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/empty", None),
        ("/redirect", {"moved": True}),
    ],
    ids=["2xx-empty-no-result", "3xx-json-not-followed"],
)
async def test_success_mapping(client, endpoint, path, expected):
    function_id = unique("remote::ok")
    client.register_function(function_id, HttpInvocationConfig(url=endpoint.url + path, method="GET"))
    await wait_registered(client, function_id)
    assert await call(client, function_id, {"q": 1}) == expected
    assert [seen.path for seen in endpoint.seen] == [path]  # the redirect is not followed


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/text", "invalid_response", "not JSON"),
        ("/error-body", "E_BAD", "bad thing"),
        ("/error-plain", "http_error", "HTTP 503"),
    ],
    ids=["2xx-not-json", "error-envelope", "status-only"],
)
async def test_error_mapping(client, endpoint, path, code, message):
    function_id = unique("remote::err")
    client.register_function(function_id, HttpInvocationConfig(url=endpoint.url + path))
    await wait_registered(client, function_id)
    with pytest.raises(InvocationError) as info:
        await call(client, function_id, {})
    assert info.value.code == code
    assert message in info.value.message


async def test_timeout_and_unreachable_endpoint_are_request_failures(client, endpoint):
    slow = unique("remote::slow")
    closed = unique("remote::closed")
    client.register_function(slow, HttpInvocationConfig(url=endpoint.url + "/slow", timeout_ms=200))
    client.register_function(closed, HttpInvocationConfig(url="http://127.0.0.1:9/nothing-listens"))
    await wait_registered(client, slow)
    await wait_registered(client, closed)
    started = time.monotonic()
    with pytest.raises(InvocationError) as info:
        await call(client, slow, {})
    assert info.value.code == "http_request_failed"
    assert "timed out after 200 ms" in info.value.message
    assert time.monotonic() - started < 5
    with pytest.raises(InvocationError) as info:
        await call(client, closed, {})
    assert info.value.code == "http_request_failed"


async def test_refused_registrations_are_logged_and_not_registered(functions_engine, client, endpoint):
    private = unique("remote::private")
    missing_env = unique("remote::noenv")
    plain_http = unique("remote::plainhttp")
    client.register_function(private, HttpInvocationConfig(url="https://10.1.2.3/hook"))
    client.register_function(
        missing_env,
        HttpInvocationConfig(
            url=endpoint.url + "/json", auth=HttpAuthBearer(token_key="TEST_NOT_SET_ANYWHERE")
        ),
    )
    client.register_function(plain_http, HttpInvocationConfig(url="http://example.com/hook"))
    for function_id, reason in (
        (private, "non-public address 10.1.2.3"),
        (missing_env, "TEST_NOT_SET_ANYWHERE"),
        (plain_http, "must use https"),
    ):
        wait_for(
            lambda f=function_id, r=reason: (
                f in functions_engine.stderr_tail(200) and r in functions_engine.stderr_tail(200)
            ),
            what=f"the refusal of {function_id} is logged",
        )
        with pytest.raises(InvocationError) as info:
            await call(client, function_id, {})
        assert info.value.code == "function_not_found"
    assert endpoint.seen == []


@pytest.fixture
def strict_engine(engine_factory: Callable[..., EngineProcess], tmp_path: Path) -> EngineProcess:
    config = write_config(
        tmp_path / "strict.toml",
        {"http-functions": {"enabled": True}},
        text=(
            "[http-functions.security]\n"
            'url_allowlist = ["localhost", "*.example.com"]\n'
            "require_https = false\nallow_loopback = false\nblock_private_ips = true\n"
        ),
    )
    return engine_factory(config=config)


async def test_url_policy_without_the_loopback_exemption(strict_engine, endpoint):
    port = endpoint.url.rsplit(":", 1)[1]
    client = register_worker(strict_engine.url, InitOptions(worker_name=unique("strict")))
    try:
        by_ip = unique("remote::byip")
        by_name = unique("remote::byname")
        client.register_function(by_ip, HttpInvocationConfig(url=endpoint.url + "/json"))
        client.register_function(by_name, HttpInvocationConfig(url=f"http://localhost:{port}/json"))
        # 127.0.0.1 is not in the allowlist: refused at registration.
        wait_for(lambda: by_ip in strict_engine.stderr_tail(200), what="the refusal is logged")
        assert "url_allowlist" in strict_engine.stderr_tail(200)
        with pytest.raises(InvocationError) as info:
            await call(client, by_ip, {})
        assert info.value.code == "function_not_found"
        # localhost is allowed by name, but resolves to a loopback address: refused per call.
        await wait_registered(client, by_name)
        with pytest.raises(InvocationError) as info:
            await call(client, by_name, {})
        assert info.value.code == "url_validation_failed"
        assert "non-public address" in info.value.message
        assert endpoint.seen == []
    finally:
        client.shutdown()


async def test_without_the_builtin_http_invoked_registrations_are_ignored(engine, endpoint):
    client = register_worker(engine.url, InitOptions(worker_name=unique("no-http-fn")))
    try:
        function_id = unique("remote::ignored")
        client.register_function(function_id, HttpInvocationConfig(url=endpoint.url + "/json"))
        wait_for(
            lambda: function_id in engine.stderr_tail(200), what="the engine logs the ignored registration"
        )
        with pytest.raises(InvocationError) as info:
            await call(client, function_id, {})
        assert info.value.code == "function_not_found"
    finally:
        client.shutdown()


async def test_official_iii_worker_registers_an_http_invoked_function(functions_engine, client, endpoint):
    iii = pytest.importorskip("iii")
    from iii_helpers.http import HttpAuthBearer as OfficialBearer
    from iii_helpers.http import HttpInvocationConfig as OfficialConfig

    official = iii.register_worker(functions_engine.url, iii.InitOptions(worker_name=unique("official-fn")))
    try:
        function_id = unique("remote::official")
        official.register_function(
            function_id,
            OfficialConfig(url=endpoint.url + "/json", auth=OfficialBearer(token_key="TEST_BEARER_TOKEN")),
        )
        await wait_registered(client, function_id)
        result = await call(client, function_id, {"from": "ours"})
        assert result["echo"]["from"] == "ours"
        assert endpoint.seen[0].headers["Authorization"] == "Bearer tok-123"
    finally:
        shutdown_official(official)
