"""Settings of the ``http`` built-in: the ``[http]`` table of ``engine.toml`` (protocol.md §6.6).

```toml
[http]
default_timeout = 30000            # ms for the whole request (middleware included) → 504
concurrency_request_limit = 1024   # requests served at once; more wait for a slot
max_body_bytes = 33554432          # request bodies over this → 413 (extension; 32 MiB)
header_read_timeout_ms = 10000     # a request head must be complete this long after its first
                                   # byte (or after the connection opens) → closed (extension)
keepalive_timeout_ms = 75000       # an idle keep-alive connection is closed after this (extension)
cors = { allowed_origins = ["http://localhost:5173"], allowed_methods = ["GET", "POST"] }

[[http.middleware]]                # global middleware, lower priority first
function_id = "auth::check"
phase = "preHandler"
priority = 10
```

The listener's port is ``[engine] http_port`` / ``--http-port`` (default 3111; 0 = free) and its
interface ``[engine] host``. Unknown keys and wrong types are configuration errors that name the
key (the engine exits with code 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..config import ConfigError
from ._http_routes import HTTP_METHODS

__all__ = [
    "DEFAULT_HEADER_READ_TIMEOUT_MS",
    "DEFAULT_KEEPALIVE_TIMEOUT_MS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TIMEOUT_MS",
    "CorsSettings",
    "HttpSettings",
    "MiddlewareEntry",
    "parse_settings",
]

#: ``default_timeout`` of the real engine, ms.
DEFAULT_TIMEOUT_MS: Final = 30_000
#: ``concurrency_request_limit`` of the real engine.
DEFAULT_CONCURRENCY: Final = 1024
#: Largest request body accepted by default (bytes): JSON bodies also travel inside the handler's
#: ``invokefunction`` frame, which the protocol caps at 64 MiB.
DEFAULT_MAX_BODY_BYTES: Final = 32 * 1024 * 1024
#: Time a client has to send a complete request head (request line and headers), ms: counted from
#: the connection's opening for its first request, from the first byte for the next ones.
DEFAULT_HEADER_READ_TIMEOUT_MS: Final = 10_000
#: Time an idle keep-alive connection stays open after a response, ms (nginx's default).
DEFAULT_KEEPALIVE_TIMEOUT_MS: Final = 75_000

_KEYS: Final = frozenset(
    {
        "enabled",
        "default_timeout",
        "concurrency_request_limit",
        "max_body_bytes",
        "header_read_timeout_ms",
        "keepalive_timeout_ms",
        "cors",
        "middleware",
    }
)


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """CORS policy; an empty list allows any origin / method.

    Attributes:
        allowed_origins: Origins answered with ``Access-Control-Allow-Origin``.
        allowed_methods: Methods announced in preflight answers.
    """

    allowed_origins: tuple[str, ...] = ()
    allowed_methods: tuple[str, ...] = ()

    def origin_allowed(self, origin: str) -> bool:
        """Whether ``origin`` may read responses."""
        return not self.allowed_origins or "*" in self.allowed_origins or origin in self.allowed_origins


@dataclass(frozen=True, slots=True)
class MiddlewareEntry:
    """One global middleware function.

    Attributes:
        function_id: Function called before every routed request.
        priority: Lower runs first.
        phase: Only ``preHandler`` exists.
    """

    function_id: str
    priority: int = 0
    phase: str = "preHandler"


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Parsed ``[http]`` table (see the module docstring).

    Attributes:
        timeout: Whole-request timeout in seconds.
        concurrency: Requests served at once.
        max_body_bytes: Largest accepted request body.
        header_read_timeout: Seconds a client has to send a complete request head.
        keepalive_timeout: Seconds an idle keep-alive connection stays open.
        cors: CORS policy, or ``None`` for no CORS headers at all.
        middleware: Global middleware, in the order they run.
    """

    timeout: float = DEFAULT_TIMEOUT_MS / 1000
    concurrency: int = DEFAULT_CONCURRENCY
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_read_timeout: float = DEFAULT_HEADER_READ_TIMEOUT_MS / 1000
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_MS / 1000
    cors: CorsSettings | None = None
    middleware: tuple[MiddlewareEntry, ...] = field(default_factory=tuple)


def _int(table: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"http.{key} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(f"http.{key} must be >= {minimum}, got {value}")
    return value


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"http.cors.{key} must be a list of strings")
    return tuple(value)


def _cors(value: Any) -> CorsSettings:
    if not isinstance(value, dict):
        raise ConfigError("http.cors must be a table")
    unknown = set(value) - {"allowed_origins", "allowed_methods"}
    if unknown:
        raise ConfigError(
            f"unknown key http.cors.{sorted(unknown)[0]} (known: allowed_methods, allowed_origins)"
        )
    methods = tuple(m.upper() for m in _strings(value.get("allowed_methods", []), "allowed_methods"))
    bad = [m for m in methods if m not in HTTP_METHODS]
    if bad:
        raise ConfigError(f"http.cors.allowed_methods: unknown method {bad[0]!r}")
    return CorsSettings(
        allowed_origins=_strings(value.get("allowed_origins", []), "allowed_origins"),
        allowed_methods=methods,
    )


def _middleware(value: Any) -> tuple[MiddlewareEntry, ...]:
    if not isinstance(value, list):
        raise ConfigError("http.middleware must be an array of tables ([[http.middleware]])")
    entries: list[MiddlewareEntry] = []
    for index, item in enumerate(value):
        where = f"http.middleware[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = set(item) - {"function_id", "phase", "priority"}
        if unknown:
            raise ConfigError(
                f"unknown key {where}.{sorted(unknown)[0]} (known: function_id, phase, priority)"
            )
        function_id = item.get("function_id")
        if not isinstance(function_id, str) or not function_id.strip():
            raise ConfigError(f"{where}.function_id must be a non-empty string")
        phase = item.get("phase", "preHandler")
        if phase != "preHandler":
            raise ConfigError(f'{where}.phase must be "preHandler", got {phase!r}')
        priority = item.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ConfigError(f"{where}.priority must be an integer")
        entries.append(MiddlewareEntry(function_id=function_id, priority=priority, phase=phase))
    # Stable sort: equal priorities keep their order in the file.
    return tuple(sorted(entries, key=lambda entry: entry.priority))


def parse_settings(table: Mapping[str, Any]) -> HttpSettings:
    """Read the ``[http]`` table.

    Raises:
        ConfigError: an unknown key or a bad value (the message names the key).
    """
    unknown = set(table) - _KEYS
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise ConfigError(f"unknown key http.{sorted(unknown)[0]} (known: {known})")
    timeout_ms = _int(table, "default_timeout", DEFAULT_TIMEOUT_MS, 1)
    return HttpSettings(
        timeout=timeout_ms / 1000,
        concurrency=_int(table, "concurrency_request_limit", DEFAULT_CONCURRENCY, 1),
        max_body_bytes=_int(table, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, 0),
        header_read_timeout=_int(table, "header_read_timeout_ms", DEFAULT_HEADER_READ_TIMEOUT_MS, 1) / 1000,
        keepalive_timeout=_int(table, "keepalive_timeout_ms", DEFAULT_KEEPALIVE_TIMEOUT_MS, 1) / 1000,
        cors=_cors(table["cors"]) if "cors" in table else None,
        middleware=_middleware(table.get("middleware", [])),
    )
