"""The engine command line, routes and shutdown (decisions "Engine command line")."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from engine_raw import open_worker
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from iii_typed.engine import Engine, EngineConfig
from iii_typed.engine.process import EngineProcess

# `engine` first; `http` and `streams` appear when those built-ins run (decisions "Engine command line").
READY = re.compile(
    r'^\{"engine": "ws://127\.0\.0\.1:(\d+)"'
    r'(?:, "http": "http://127\.0\.0\.1:\d+")?(?:, "streams": "ws://127\.0\.0\.1:\d+")?\}$'
)


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "iii_typed.engine", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 10) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"engine did not exit within {timeout} s; stderr:\n{err}") from None
    return proc.returncode, out, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_ready_line_and_clean_shutdown(signum):
    proc = _spawn("--port", "0")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        match = READY.match(line.rstrip("\n"))
        assert match, f"unexpected ready line {line!r}"
        url = f"ws://127.0.0.1:{match.group(1)}"
        worker = await open_worker(url)
        proc.send_signal(signum)
        await asyncio.wait_for(worker.closed.wait(), 10)
        assert worker.close_code == 1001  # a close frame, not a dropped socket
        code, out, err = await asyncio.to_thread(_finish, proc)
        assert code == 0, err
        assert out == ""  # exactly one line on stdout
        assert "engine stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _spawn_console_script(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("iii-typed")), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_port_zero_frees_every_port_and_the_cli_dispatch():
    proc = _spawn_console_script("engine", "--port", "0", "--log-level", "debug")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        addresses = json.loads(line)
        assert next(iter(addresses)) == "engine"
        assert all(not url.endswith(":49134") for url in addresses.values())
        worker = await open_worker(addresses["engine"])
        await worker.close()
    finally:
        proc.terminate()
        code, _, err = await asyncio.to_thread(_finish, proc)
    assert code == 0
    assert "DEBUG" in err


def test_config_file(tmp_path):
    config = tmp_path / "engine.toml"
    config.write_text(
        '[engine]\nport = 0\nnamespace_grace_ms = 100\nlog_level = "WARNING"\n[engine-functions]\n'
        "functions_available_interval_ms = 100\n",
        encoding="utf-8",
    )
    with EngineProcess(config=config) as engine:
        assert READY.match(json.dumps(engine.addresses))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[engine]\nport = 'x'\n", "engine.port must be int"),
        ("[engine]\nportt = 1\n", "unknown key engine.portt"),
        ("[engine\n", "not valid TOML"),
        ("[engine]\nport = 0\nbuiltins = ['nope']\n", "unknown built-in worker(s) in engine.builtins: nope"),
        ("[engine]\nport = 70000\n", "port must be between 0 and 65535"),
        ("[state]\nenabled = 'yes'\n", "state.enabled must be true or false"),
        ("[engine]\nport = 0\n[stream]\nenabled = true\n", "unknown table(s) in the configuration: [stream]"),
    ],
)
def test_bad_config_exits_2(tmp_path, content, message):
    config = tmp_path / "engine.toml"
    config.write_text(content, encoding="utf-8")
    code, out, err = _finish(_spawn("--config", str(config)))
    assert code == 2
    assert message in err
    assert out == ""


def test_missing_config_and_bad_log_level_exit_2(tmp_path):
    code, _, err = _finish(_spawn("--config", str(tmp_path / "missing.toml")))
    assert code == 2 and "cannot read config file" in err
    code, _, err = _finish(_spawn("--port", "0", "--log-level", "loud"))
    assert code == 2 and "unknown log level" in err


def test_port_in_use_exits_1():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, out, err = _finish(_spawn("--port", str(port)))
    assert code == 1
    assert "cannot start the engine" in err
    assert out == ""


async def test_routes(engine):
    base = engine.url
    for path in ("/nope", "/ws/channels/abc?key=k&dir=read", "/otel/extra"):
        with pytest.raises(InvalidStatus) as info:
            await connect(base + path, compression=None)
        assert info.value.response.status_code == 404
        if path.startswith("/ws/channels/"):
            assert b"Channel not found" in info.value.response.body
    async with connect(base + "/otel", compression=None) as otel:
        await otel.send(b"OTLP" + b'{"resourceSpans":[]}')
        await otel.send(b"LOGS{}")
        await otel.send('{"type":"ping"}')  # text frames are ignored on /otel
        await otel.send(b"XXXX unknown prefix")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(otel.recv(), 0.2)  # nothing is ever answered on /otel
    worker = await open_worker(base)
    await worker.sync()
    await worker.close()


async def test_handshake_negotiates_no_extension(engine):
    async with connect(engine.url) as ws:  # the client offers permessage-deflate
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_in_process_engine():
    async with Engine(EngineConfig(port=0, http_port=0, stream_port=0)) as engine:
        assert next(iter(engine.addresses)) == "engine"
        assert set(engine.addresses) <= {"engine", "http", "streams"}
        worker = await open_worker(engine.url)
        assert (await worker.result("engine::health::check", {}))["status"] == "healthy"
        closed = asyncio.ensure_future(worker.closed.wait())
    await asyncio.wait_for(closed, 5)
    assert worker.close_code == 1001
    with pytest.raises((ConnectionClosed, OSError)):
        await connect(engine.url, compression=None, open_timeout=2)


@pytest.mark.parametrize(
    ("store", "content"),
    [
        *(
            (store, content)
            for store in ("state", "queue", "streams")
            for content in ("garbage", "foreign schema")
        ),
        ("queue", "missing columns"),  # the index fits, loading the messages does not
    ],
)
def test_an_unusable_database_in_the_data_dir_exits_1_naming_it(tmp_path, store, content):
    """A corrupt file, or an SQLite file with other tables under a built-in's name, ended the engine
    with a Python traceback; it is a start-up error like a port in use: one line naming the file."""
    path = tmp_path / f"{store}.sqlite3"
    if content == "garbage":
        path.write_bytes(os.urandom(4096))
    else:
        import sqlite3

        table = {"state": "state", "queue": "messages", "streams": "items"}[store]
        # The built-in's table with other columns, or with only the columns its index names.
        columns = "x" if content == "foreign schema" else "kind, name, state, scope, seq, stream, grp"
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE {table} ({columns})")
    code, out, err = _finish(_spawn("--port", "0", "--data-dir", str(tmp_path)))
    assert code == 1, err
    assert out == ""
    assert "Traceback" not in err
    assert "cannot start the engine" in err
    assert str(path) in err or f"database in {tmp_path} (" in err
