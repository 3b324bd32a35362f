"""The http port against malformed and slow clients, with raw sockets against a real engine process.

Each malformed request gets a 400 (or 408/413) where a response is still possible, the connection is
closed, the engine logs it as single lines (no traceback, nothing at ERROR), and the next client —
on the http port and on the worker port — is served as usual. A client that does not finish its
request head within ``[http] header_read_timeout_ms`` (300 ms here) is disconnected.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_helpers import unique, write_config
from support.waiting import FACTOR, wait_for, wait_for_async

from iii_typed import III, InitOptions, register_worker
from iii_typed.engine.builtins._http_config import (
    DEFAULT_HEADER_READ_TIMEOUT_MS,
    DEFAULT_KEEPALIVE_TIMEOUT_MS,
    parse_settings,
)
from iii_typed.engine.config import ConfigError
from iii_typed.engine.process import EngineProcess

HEADER_TIMEOUT = 0.3  # s, [http] header_read_timeout_ms of the engine under test
MAX_BODY = 4096  # [http] max_body_bytes
#: Slack on every "within" bound (a loaded 2-core machine).
BOUND = 3.0 * FACTOR
#: A log record is one line: timestamp, level, logger (the engine's format). Tracebacks and other
#: continuation lines do not match.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING) \S+: ")


# -- engine, worker, routes ----------------------------------------------------------------------
class Served:
    """The engine under test, its worker and its routes."""

    def __init__(
        self, proc: EngineProcess, log: Path, worker: III, echo: str, stream: str, headers: str
    ) -> None:
        self.proc = proc
        self.log = log
        self.worker = worker
        self.echo = echo  # POST: body read whole by the engine when JSON, streamed otherwise
        self.stream = stream  # POST: the handler reads the streamed body to its end
        self.headers = headers  # POST: answers the request headers the handler got
        self.port = int(proc.http_url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("http-bad-clients")
    config = write_config(
        tmp / "engine.toml",
        {
            "http": {
                "default_timeout": 10000,
                "max_body_bytes": MAX_BODY,
                "header_read_timeout_ms": round(HEADER_TIMEOUT * 1000),
            }
        },
    )
    log = tmp / "engine.log"
    proc = EngineProcess(config=config, log_path=log).start()
    worker = register_worker(proc.url, InitOptions(worker_name=unique("bad-clients")))
    try:
        echo, stream, headers = unique("/echo"), unique("/stream"), unique("/headers")

        def answer(data: Any) -> Any:
            return {"status_code": 200, "body": {"ok": True}}

        async def read_body(data: Any) -> Any:
            raw = await data["request_body"].read_all_async()
            return {"status_code": 200, "body": {"bytes": len(raw)}}

        def echo_headers(data: Any) -> Any:
            return {"status_code": 200, "body": {"headers": data["headers"]}}

        ids = []
        for path, handler in ((echo, answer), (stream, read_body), (headers, echo_headers)):
            function_id = unique("bad-clients::fn")
            worker.register_function(function_id, handler)
            trigger = worker.register_trigger(
                {
                    "type": "http",
                    "function_id": function_id,
                    "config": {"api_path": path, "http_method": "POST"},
                }
            )
            ids.append(trigger.id)

        def live() -> bool:
            listed = worker.trigger(
                {"function_id": "engine::registered-triggers::list", "payload": {"trigger_type": "http"}}
            )
            return set(ids) <= {row["id"] for row in listed["registered_triggers"]}

        wait_for(live, timeout=10, what="routes live")
        yield Served(proc, log, worker, echo, stream, headers)
    finally:
        worker.shutdown()
        proc.stop()


# -- raw HTTP ------------------------------------------------------------------------------------
class Raw:
    """One raw TCP connection to the http port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self, within: float = BOUND) -> bytes:
        """Everything the engine sends until it closes the connection (EOF or reset)."""
        received = bytearray()
        try:
            async with asyncio.timeout(within):
                while chunk := await self.reader.read(65536):
                    received += chunk
        except ConnectionError:
            pass
        except TimeoutError:
            raise AssertionError(
                f"connection still open after {within:.1f} s; got {bytes(received)!r}"
            ) from None
        return bytes(received)

    async def response(self, within: float = BOUND) -> tuple[int, bytes]:
        """One ``Content-Length`` response on a connection that stays open: status and body."""
        async with asyncio.timeout(within):
            head = await self.reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?im)^content-length:\s*(\d+)\r$", head)
            body = await self.reader.readexactly(int(match.group(1))) if match else b""
        return status_of(head), body

    def close(self) -> None:
        self.writer.close()


def status_of(raw: bytes) -> int:
    """The status code of the first response in ``raw``."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    assert match is not None, f"not an HTTP response: {raw[:200]!r}"
    return int(match.group(1))


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything received until the engine closes it."""
    conn = await Raw.open(port)
    try:
        await conn.send(data)
        return await conn.until_closed()
    finally:
        conn.close()


async def barrier(port: int) -> None:
    """A full request on another connection: bytes written before it have been read by the engine.

    The engine reads every ready socket in each loop turn; a response to a request sent after
    ``data`` was written means the turn that read ``data`` has passed.
    """
    raw = await exchange(port, b"GET /barrier-404 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(raw) == 404


def post(path: str, headers: str = "", body: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode() + body


# -- engine log ----------------------------------------------------------------------------------
def log_size(served: Served) -> int:
    return served.log.stat().st_size


def log_since(served: Served, mark: int) -> str:
    with served.log.open("rb") as file:
        file.seek(mark)
        return file.read().decode("utf-8", "replace")


async def logged(served: Served, mark: int, *fragments: str) -> str:
    """Wait until the engine has logged one of ``fragments`` since ``mark``; the log text since then."""

    def found() -> str:
        text = log_since(served, mark)
        return text if any(fragment in text for fragment in fragments) else ""

    return await wait_for_async(found, timeout=BOUND, what=f"one of {fragments!r} in the engine log")


def assert_single_lines(text: str) -> None:
    """Every record is one line at most at WARNING: no traceback, no ERROR."""
    assert "Traceback" not in text, text
    for line in text.splitlines():
        if line.strip():
            assert LOG_LINE.match(line), f"not a single-line record below ERROR: {line!r}\n{text}"


async def assert_still_serving(served: Served) -> None:
    """A normal request on a new connection, and a call over the worker port, both succeed."""
    raw = await exchange(
        served.port,
        post(
            served.echo, "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n", b"{}"
        ),
    )
    assert status_of(raw) == 200, raw
    assert raw.endswith(b'{"ok":true}')
    listed = await served.worker.trigger_async({"function_id": "engine::workers::list", "payload": {}})
    assert any(row["name"] == "iii-http" for row in listed["workers"])


# -- malformed requests --------------------------------------------------------------------------
ECHO = "{echo}"  # replaced by the echo route's path
MALFORMED = {
    "garbage instead of a request line": b"\x00\x01garbage\xff\r\n\r\n",
    "a TLS handshake": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    "an invalid header line": b"GET /x HTTP/1.1\r\nHost: t\r\nthis is not a header\r\n\r\n",
    "a space before the colon": b"GET /x HTTP/1.1\r\nHost : t\r\n\r\n",
    "a NUL in a header value": b"GET /x HTTP/1.1\r\nHost: t\x00u\r\n\r\n",
    "a bad Content-Length": b"POST {echo} HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    "a negative Content-Length": b"POST {echo} HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
    "an overflowing Content-Length": (
        b"POST {echo} HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n"
    ),
    "two Content-Lengths": (
        b"POST {echo} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
    ),
    "Content-Length with chunked": (
        b"POST {echo} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "an oversized header": b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "too many headers": b"GET /x HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
    "an oversized request line": b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    "a non-UTF-8 path": b"GET /\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n",
    "HTTP/9.9": b"GET /x HTTP/9.9\r\nHost: t\r\n\r\n",
    # aiohttp's C parser accepts these three; the engine refuses them like the others
    "no version (HTTP/0.9)": b"GET {echo}\r\n\r\n",
    "HTTP/0.9": b"GET {echo} HTTP/0.9\r\nHost: t\r\n\r\n",
    "HTTP/2.0": (
        b"POST {echo} HTTP/2.0\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ),
    "bare LF line ends": b"GET /x HTTP/1.1\nHost: t\n\n",
    "a bad chunk size (JSON body)": (
        b"POST {echo} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\nZZZ\r\n'
    ),
    "a bad chunk size (streamed body)": (
        b"POST {echo} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n"
    ),
    "a chunk longer than its size": (
        b"POST {echo} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nHello\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_request_gets_400_and_one_log_line(served: Served, request_bytes: bytes) -> None:
    mark = log_size(served)
    raw = await exchange(served.port, request_bytes.replace(ECHO.encode(), served.echo.encode()))
    assert status_of(raw) == 400, raw
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: text/plain" in head.lower()
    assert body.strip(), "the 400 says what was wrong"
    assert body.count(b"\n") == 1  # one line, no traceback
    # aiohttp's parser refuses the request (or, had the head been read on its own, the body fails)
    text = await logged(served, mark, "bad request from 127.0.0.1: 400", "bad request body")
    assert_single_lines(text)
    await assert_still_serving(served)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_chunked_body_broken_after_the_head_gets_400(served: Served, content_type: str) -> None:
    """The head reaches the handler first; the bad chunk arrives later (aiohttp's C parser would
    leave the body waiting until the request's deadline)."""
    mark = log_size(served)
    conn = await Raw.open(served.port)
    try:
        path = served.stream if content_type == "text/plain" else served.echo
        await conn.send(
            post(path, f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n")
        )
        await barrier(served.port)
        started = time.monotonic()
        await conn.send(b"not-hex\r\n")
        raw = await conn.until_closed()
    finally:
        conn.close()
    assert status_of(raw) == 400, raw
    assert time.monotonic() - started < BOUND  # not the 10 s request deadline
    assert b"chunk size" in raw
    text = await logged(served, mark, "bad request body")
    assert_single_lines(text)
    await assert_still_serving(served)


@pytest.mark.parametrize(
    ("content_type", "framing"),
    [
        ("application/json", "Content-Length: 100\r\n"),
        ("application/json", "Transfer-Encoding: chunked\r\n"),
        ("text/plain", "Content-Length: 100\r\n"),
        ("text/plain", "Transfer-Encoding: chunked\r\n"),
    ],
)
async def test_client_leaving_mid_body_is_one_log_line(
    served: Served, content_type: str, framing: str
) -> None:
    mark = log_size(served)
    conn = await Raw.open(served.port)
    part = b'5\r\n{"a":\r\n' if "chunked" in framing else b'{"a":'
    path = served.stream if content_type == "text/plain" else served.echo
    await conn.send(post(path, f"Content-Type: {content_type}\r\n{framing}", part))
    await barrier(served.port)  # the engine is waiting for the rest of the body
    conn.writer.transport.abort()  # gone, without a word
    text = await logged(served, mark, "the client went away")
    assert_single_lines(text)
    await assert_still_serving(served)


# -- slow clients --------------------------------------------------------------------------------
async def test_incomplete_head_gets_408_after_the_header_read_timeout(served: Served) -> None:
    mark = log_size(served)
    started = time.monotonic()
    conn = await Raw.open(served.port)
    try:
        await conn.send(b"GET /x HTTP/1.1\r\nHost: t\r\n")  # no blank line: the head never ends
        raw = await conn.until_closed(within=HEADER_TIMEOUT + BOUND)
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    assert status_of(raw) == 408
    assert HEADER_TIMEOUT * 0.8 <= elapsed < HEADER_TIMEOUT + BOUND
    text = await logged(served, mark, "request head incomplete after 300 ms")
    assert_single_lines(text)
    await assert_still_serving(served)


async def test_a_dribbling_client_is_cut_off(served: Served) -> None:
    """Slowloris: a header line every 50 ms would go on for 10 s; the engine closes at 300 ms."""
    started = time.monotonic()
    conn = await Raw.open(served.port)
    received = b""
    try:
        await conn.send(b"GET /x HTTP/1.1\r\nHost: t\r\n")
        for index in range(200):
            read = asyncio.ensure_future(conn.reader.read(65536))
            done, _ = await asyncio.wait({read}, timeout=0.05)  # the client's pace, not a wait
            if done:
                received = read.result() if read.exception() is None else b"(reset)"
                break
            read.cancel()
            try:
                await conn.send(b"X-Dribble-%d: v\r\n" % index)
            except ConnectionError:
                break
        else:
            raise AssertionError("the engine kept a dribbling connection open for 10 s")
    finally:
        conn.close()
    assert time.monotonic() - started < HEADER_TIMEOUT + BOUND
    assert received in (b"", b"(reset)") or status_of(received) == 408
    await assert_still_serving(served)


async def test_a_silent_connection_is_closed_without_a_response(served: Served) -> None:
    started = time.monotonic()
    conn = await Raw.open(served.port)
    try:
        raw = await conn.until_closed(within=HEADER_TIMEOUT + BOUND)
    finally:
        conn.close()
    assert raw == b""  # nothing was asked: nothing is answered
    assert HEADER_TIMEOUT * 0.8 <= time.monotonic() - started < HEADER_TIMEOUT + BOUND


async def test_a_head_in_pieces_within_the_timeout_is_served(served: Served) -> None:
    conn = await Raw.open(served.port)
    try:
        await conn.send(f"POST {served.echo} HTTP/1.1\r\n".encode())
        await barrier(served.port)
        await conn.send(b"Host: t\r\nContent-Type: application/json\r\n")
        await barrier(served.port)
        await conn.send(b"Content-Length: 2\r\n\r\n{}")
        status, body = await conn.response()
    finally:
        conn.close()
    assert (status, body) == (200, b'{"ok":true}')


async def test_keepalive_idle_is_not_the_header_timeout(served: Served) -> None:
    """Between requests the header timer is off; the next request's first byte starts it again."""
    request = post(served.echo, "Content-Type: application/json\r\nContent-Length: 2\r\n", b"{}")
    conn = await Raw.open(served.port)
    try:
        await conn.send(request)
        assert await conn.response() == (200, b'{"ok":true}')
        await asyncio.sleep(HEADER_TIMEOUT * 2)  # deliberately idle longer than the header timeout
        await conn.send(request)
        assert await conn.response() == (200, b'{"ok":true}')
        await conn.send(b"GET /x HTTP/1.1\r\n")  # a next head that never ends
        raw = await conn.until_closed(within=HEADER_TIMEOUT + BOUND)
    finally:
        conn.close()
    assert status_of(raw) == 408


# -- header text and Expect ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "received"),
    [
        (b"X-Latin-1: caf\xe9", {"x-latin-1": "caf\ufffd"}),
        (b"X-Mixed: \xe2\x98\x83 and \xff", {"x-mixed": "\u2603 and \ufffd"}),
        # the baggage of a valid trace context travels in the handler's frame too
        (
            b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nbaggage: k=\xe9",
            {"baggage": "k=\ufffd"},
        ),
    ],
    ids=["latin-1", "utf-8 and a stray byte", "baggage"],
)
async def test_a_header_value_that_is_not_utf8_reaches_the_handler_with_replacement_characters(
    served: Served, header: bytes, received: dict[str, str]
) -> None:
    """Bytes that are not UTF-8 in a header value (obs-text) become U+FFFD, as in the path and the
    query; the request used to fail with a 500 and an ERROR traceback (the frame could not be
    encoded)."""
    mark = log_size(served)
    head = f"POST {served.headers} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n"
    raw = await exchange(served.port, head.encode() + header + b"\r\n\r\n")
    assert status_of(raw) == 200, raw
    got = json.loads(raw.partition(b"\r\n\r\n")[2])["headers"]
    assert received.items() <= got.items(), got
    await assert_still_serving(served)
    assert_single_lines(log_since(served, mark))


async def test_expect_100_continue_gets_an_interim_response_and_then_the_answer(served: Served) -> None:
    """A client that sends ``Expect: 100-continue`` waits for ``100 Continue`` before its body."""
    conn = await Raw.open(served.port)
    try:
        await conn.send(
            post(
                served.echo,
                "Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n",
            )
        )
        async with asyncio.timeout(BOUND):
            interim = await conn.reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await conn.send(b"{}")
        assert await conn.response() == (200, b'{"ok":true}')
        # the connection stays usable for a next request without Expect
        await conn.send(post(served.echo, "Content-Type: application/json\r\nContent-Length: 2\r\n", b"{}"))
        assert await conn.response() == (200, b'{"ok":true}')
    finally:
        conn.close()


@pytest.mark.parametrize(("route", "status"), [("/no-such-route", 404), ("{echo}", 413)])
async def test_expect_100_continue_refused_gets_the_final_status_without_100(
    served: Served, route: str, status: int
) -> None:
    path = route.replace("{echo}", served.echo)
    conn = await Raw.open(served.port)
    try:
        await conn.send(post(path, f"Content-Length: {MAX_BODY + 1}\r\nExpect: 100-continue\r\n"))
        async with asyncio.timeout(BOUND):
            head = await conn.reader.readuntil(b"\r\n\r\n")
    finally:
        conn.close()
    assert status_of(head) == status, head


# -- body size -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("route", "content_type", "framing"),
    [
        ("echo", "application/json", "content-length"),
        ("echo", "application/json", "chunked"),
        ("stream", "application/octet-stream", "content-length"),
        ("stream", "application/octet-stream", "chunked"),
    ],
)
async def test_body_over_max_body_bytes_gets_413(
    served: Served, route: str, content_type: str, framing: str
) -> None:
    body = b"x" * (MAX_BODY + 1)
    if framing == "chunked":
        headers = f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
        payload = (
            b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:3000], body[3000:]))
            + b"0\r\n\r\n"
        )
    else:
        headers = f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        payload = body
    mark = log_size(served)
    raw = await exchange(served.port, post(getattr(served, route), headers, payload))
    assert status_of(raw) == 413, raw
    assert b"connection: close" in raw.partition(b"\r\n\r\n")[0].lower()
    message = b"Request body is larger than 4096 bytes (max_body_bytes)"
    assert raw.endswith(b'{"error":{"code":"PAYLOAD_TOO_LARGE","message":"%s"}}' % message)
    await assert_still_serving(served)
    assert_single_lines(log_since(served, mark))


async def test_a_body_at_the_limit_is_accepted(served: Served) -> None:
    body = b"y" * MAX_BODY
    headers = f"Content-Type: application/octet-stream\r\nContent-Length: {MAX_BODY}\r\nConnection: close\r\n"
    raw = await exchange(served.port, post(served.stream, headers, body))
    assert status_of(raw) == 200, raw
    assert raw.endswith(b'{"bytes":%d}' % MAX_BODY)


# -- settings ------------------------------------------------------------------------------------
def test_timeout_settings_defaults_and_errors() -> None:
    defaults = parse_settings({})
    assert defaults.header_read_timeout == DEFAULT_HEADER_READ_TIMEOUT_MS / 1000 == 10.0
    assert defaults.keepalive_timeout == DEFAULT_KEEPALIVE_TIMEOUT_MS / 1000 == 75.0
    chosen = parse_settings({"header_read_timeout_ms": 250, "keepalive_timeout_ms": 5000})
    assert (chosen.header_read_timeout, chosen.keepalive_timeout) == (0.25, 5.0)
    for table, fragment in (
        ({"header_read_timeout_ms": 0}, "http.header_read_timeout_ms must be >= 1"),
        ({"header_read_timeout_ms": "10s"}, "http.header_read_timeout_ms must be an integer"),
        ({"keepalive_timeout_ms": True}, "http.keepalive_timeout_ms must be an integer"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            parse_settings(table)
