"""The ``http`` built-in's pure parts (no sockets): route table, response encoding, settings.

Plus the engine refusing a bad ``[http]`` / ``[http-functions]`` table at start-up (exit 2).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from http_helpers import fetch, unique, wait_routes, write_config

from iii_typed import InitOptions, register_worker
from iii_typed.engine.builtins._http_config import parse_settings
from iii_typed.engine.builtins._http_response import InvalidResponseError, buffered_response, error_envelope
from iii_typed.engine.builtins._http_routes import RouteConflictError, RouteTable, normalize_path, split_path
from iii_typed.engine.builtins.base import TriggerBinding
from iii_typed.engine.builtins.http_functions import UrlPolicy, parse_policy
from iii_typed.engine.config import ConfigError


def binding(trigger_id: str) -> TriggerBinding:
    return TriggerBinding(id=trigger_id, trigger_type="http", function_id=f"fn::{trigger_id}", config={})


def test_paths_are_normalized_and_split_with_decoding():
    assert normalize_path("users/:id/") == "/users/:id"
    assert normalize_path("/") == "/"
    assert split_path("/") == []
    assert split_path("/a/b/?x=1") == ["a", "b"]
    assert split_path("/a%2Fb/c%20d") == ["a/b", "c d"]


def test_match_prefers_literals_backtracks_and_extracts_params():
    table = RouteTable()
    table.add(binding("param"), "GET", "/users/:id")
    table.add(binding("literal"), "GET", "/users/me")
    table.add(binding("deep"), "GET", "/users/:id/posts/{post}")
    table.add(binding("root"), "GET", "/")
    route, params = table.match("GET", "/users/me") or (None, None)
    assert route is not None and route.binding.id == "literal" and params == {}
    route, params = table.match("GET", "/users/42") or (None, None)
    assert route is not None and route.binding.id == "param" and params == {"id": "42"}
    route, params = table.match("GET", "/users/me/posts/7") or (None, None)
    assert route is not None and route.binding.id == "deep" and params == {"id": "me", "post": "7"}
    route, _ = table.match("GET", "/") or (None, None)
    assert route is not None and route.binding.id == "root"
    assert table.match("GET", "/users//") is None  # a parameter never matches an empty segment
    assert table.match("POST", "/users/42") is None
    assert table.match("GET", "/users") is None


def test_head_falls_back_to_get():
    table = RouteTable()
    table.add(binding("get"), "GET", "/x")
    found = table.match("HEAD", "/x")
    assert found is not None and found[0].binding.id == "get"
    table.add(binding("head"), "HEAD", "/x")
    found = table.match("HEAD", "/x")
    assert found is not None and found[0].binding.id == "head"


def test_conflicts_replacement_and_removal():
    table = RouteTable()
    table.add(binding("a"), "GET", "/items/:id")
    with pytest.raises(RouteConflictError, match="route conflict"):
        table.add(binding("b"), "GET", "/items/:other")
    table.add(binding("c"), "POST", "/items/:other")  # another method: no conflict
    table.add(binding("d"), "GET", "/items/:id")  # same method and path: replaces
    found = table.match("GET", "/items/1")
    assert found is not None and found[0].binding.id == "d"
    assert table.remove("d")
    found = table.match("GET", "/items/1")
    assert found is not None and found[0].binding.id == "a"
    assert table.remove("a") and table.remove("c")
    assert not table.remove("a")
    assert table.match("GET", "/items/1") is None
    assert len(table) == 0
    table.add(binding("e"), "GET", "/items/:other")  # the branch was pruned: no stale conflict
    assert table.match("GET", "/items/2") is not None


def test_buffered_response_rules():
    ok = buffered_response(
        {"status_code": 201, "headers": {"Content-Type": "application/json"}, "body": {"b": 1, "a": 2}}
    )
    assert (ok.status, ok.body) == (201, b'{"a":2,"b":1}')
    assert buffered_response({}).body == b"{}"
    text = buffered_response({"headers": ["Content-Type: text/plain"], "body": "hi"})
    assert text.body == b"hi"
    assert ("content-type", "application/json") in buffered_response({"body": 1}).headers
    multi = buffered_response({"headers": {"Set-Cookie": ["a=1", "b=2"]}})
    assert [v for n, v in multi.headers if n == "Set-Cookie"] == ["a=1", "b=2"]
    for bad in (
        [1],
        {"status_code": "200"},
        {"status_code": 600},
        {"headers": {"X": "a\r\nb"}},
        {"headers": 3},
    ):
        with pytest.raises(InvalidResponseError):
            buffered_response(bad)
    assert error_envelope("NOT_FOUND", "Not Found") == b'{"error":{"code":"NOT_FOUND","message":"Not Found"}}'


def test_settings_defaults_and_errors():
    settings = parse_settings({})
    assert (settings.timeout, settings.concurrency, settings.cors) == (30.0, 1024, None)
    settings = parse_settings(
        {
            "default_timeout": 250,
            "middleware": [{"function_id": "b", "priority": 5}, {"function_id": "a", "priority": 1}],
            "cors": {"allowed_origins": [], "allowed_methods": ["get"]},
        }
    )
    assert settings.timeout == 0.25
    assert [m.function_id for m in settings.middleware] == ["a", "b"]
    assert settings.cors is not None and settings.cors.allowed_methods == ("GET",)
    for table, fragment in (
        ({"port": 1}, "unknown key http.port"),
        ({"default_timeout": "1s"}, "http.default_timeout must be an integer"),
        ({"middleware": [{"function_id": "x", "phase": "postHandler"}]}, "phase"),
        ({"cors": {"allowed_methods": ["FETCH"]}}, "FETCH"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            parse_settings(table)


def test_url_policy_static_checks():
    policy = UrlPolicy()
    assert policy.check_static("https://api.example.com/x") is None
    assert policy.check_static("http://127.0.0.1:8080/x") is None  # loopback exemption (dev engine)
    assert policy.check_static("http://localhost/x") is None
    assert "https" in (policy.check_static("http://api.example.com/x") or "")
    assert "non-public" in (policy.check_static("https://192.168.1.4/x") or "")
    assert "http or https" in (policy.check_static("ftp://example.com/x") or "")
    strict = UrlPolicy(url_allowlist=("*.example.com", "api.test:8443"), allow_loopback=False)
    assert strict.check_static("https://a.example.com/") is None
    assert strict.check_static("https://api.test:8443/") is None
    assert "url_allowlist" in (strict.check_static("https://api.test/") or "")
    assert "https" in (strict.check_static("http://127.0.0.1/") or "")
    with pytest.raises(ConfigError, match="allow_loopback"):
        parse_policy({"security": {"allow_loopback": "yes"}})
    with pytest.raises(ConfigError, match=re.escape("unknown key http-functions.security.nope")):
        parse_policy({"security": {"nope": 1}})


@pytest.mark.parametrize(
    ("tables", "fragment"),
    [
        ({"http": {"default_timeout": 0}}, "http.default_timeout must be >= 1"),
        ({"http-functions": {"enabled": True, "default_timeout_ms": "x"}}, "default_timeout_ms"),
    ],
)
def test_engine_refuses_a_bad_table_with_exit_code_2(tmp_path: Path, tables, fragment):
    config = write_config(tmp_path / "bad.toml", tables)
    done = subprocess.run(
        [sys.executable, "-m", "iii_typed.engine", "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert fragment in done.stderr
    assert done.stdout == ""


def documented_example() -> str:
    """The ``engine.toml`` example of docs/builtins.md (between its markers)."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "builtins.md").read_text(encoding="utf-8")
    block = text.split("<!-- http-config-example:begin -->", 1)[1].split(
        "<!-- http-config-example:end -->", 1
    )[0]
    return block.strip().removeprefix("```toml").removesuffix("```")


async def test_the_documented_configuration_runs(engine_factory, tmp_path):
    config = tmp_path / "example.toml"
    config.write_text(documented_example(), encoding="utf-8")
    proc = engine_factory(config=config)
    client = register_worker(proc.url, InitOptions(worker_name=unique("doc-example")))
    try:
        listed = await client.trigger_async({"function_id": "engine::workers::list", "payload": {}})
        names = {row["name"] for row in listed["workers"]}
        assert {"iii-http", "iii-http-functions"} <= names
        client.register_function("doc::hello", lambda data: {"body": "hello"})
        trigger = client.register_trigger(
            {"type": "http", "function_id": "doc::hello", "config": {"api_path": "/hello"}}
        )
        await wait_routes(client, [trigger.id])
        async with aiohttp.ClientSession() as session:
            reply = await fetch(
                session, "GET", proc.http_url + "/hello", headers={"Origin": "http://localhost:5173"}
            )
        # The example's global middleware auth::check is not registered here: every routed request
        # reaches it and fails, which shows the [[http.middleware]] table is in force.
        assert reply.status == 500
        assert reply.json()["error"]["code"] == "function_not_found"
        assert "auth::check" in reply.json()["error"]["message"]
        assert reply.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    finally:
        client.shutdown()


def test_http_port_in_use_is_a_start_up_failure_naming_it():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "iii_typed.engine", "--port", "0", "--http-port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"http port 127.0.0.1:{port}" in done.stderr
    assert done.stdout == ""
