"""Engine configuration: defaults, ``engine.toml`` and command-line overrides.

``engine.toml`` (read with :mod:`tomllib`)::

    [engine]
    host = "127.0.0.1"        # interface to bind (decisions: 127.0.0.1 only by default)
    port = 49134              # worker port; 0 = free port, and every port not set explicitly too
    http_port = 3111          # REST / HTTP trigger listener (when the http built-in runs)
    stream_port = 3112        # stream WebSocket listener (when the streams built-in runs)
    data_dir = ".iii"         # SQLite files for state/streams/queues; absent = in memory
    builtins = ["state", "cron"]   # optional: exactly which optional built-ins run
    namespace_grace_ms = 5000 # wait for engine::workers::register before using `default`
    log_level = "INFO"
    auth_token = "…"          # optional: every WebSocket upgrade needs `Authorization: Bearer …`
    stall_timeout_ms = 10000  # a worker whose unsent bytes stop shrinking this long is closed
    max_registrations_per_worker = 10000  # functions + trigger types + triggers + services

    [state]                   # one table per built-in worker (its ``section``)
    enabled = true            # any built-in may be switched off (mandatory ones ignore it)

Precedence: command line, then ``engine.toml``, then defaults; the environment variables
``III_NAMESPACE_GRACE_MS``, ``III_STALL_TIMEOUT_MS``, ``III_LOG`` and ``III_ENGINE_TOKEN`` override
the file too
(protocol.md §3.1; the token: :mod:`iii_typed.engine.auth`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_NAMESPACE_GRACE_MS",
    "DEFAULT_PORT",
    "DEFAULT_STALL_TIMEOUT_MS",
    "DEFAULT_STREAM_PORT",
    "ConfigError",
    "EngineConfig",
    "load_config",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 49134
DEFAULT_HTTP_PORT = 3111
DEFAULT_STREAM_PORT = 3112
#: Grace period for ``engine::workers::register`` before buffered registrations go to ``default``.
DEFAULT_NAMESPACE_GRACE_MS = 5000
#: How long a send may wait for a worker's buffer to drain before the worker is closed as stuck.
DEFAULT_STALL_TIMEOUT_MS = 10000

_ENGINE_KEYS: dict[str, type[Any]] = {
    "host": str,
    "port": int,
    "http_port": int,
    "stream_port": int,
    "data_dir": str,
    "builtins": list,
    "namespace_grace_ms": int,
    "log_level": str,
    "auth_token": str,
    "stall_timeout_ms": int,
    "max_registrations_per_worker": int,
}


class ConfigError(ValueError):
    """The configuration file or a setting is invalid; the message names the key."""


@dataclass
class EngineConfig:
    """Settings of one engine.

    Attributes:
        host: Interface every listener binds.
        port: Worker WebSocket port (0 = pick a free one).
        http_port: HTTP trigger port (0 = free).
        stream_port: Stream WebSocket port (0 = free).
        data_dir: Folder for SQLite persistence, or ``None`` for in-memory storage.
        builtins: Names (or sections) of the optional built-in workers to run, or ``None`` for
            each built-in's default.
        sections: Every other ``engine.toml`` table, keyed by table name.
        namespace_grace_ms: Milliseconds to wait for ``engine::workers::register``.
        log_level: Logging level name.
        auth_token: Bearer token every WebSocket upgrade must present, or ``None`` (no
            authentication; see :mod:`iii_typed.engine.auth`). Never logged.
        stall_timeout_ms: Milliseconds a send may wait for a worker's outbound buffer to drain
            before that worker is closed as stuck (docs/reliability.md).
        max_registrations_per_worker: Functions, trigger types, triggers and services one
            connection may register (:mod:`iii_typed.engine.limits`).
        source: The file the configuration came from, if any.
        explicit: ``[engine]`` keys the file set (they are not zeroed by ``port = 0``).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    http_port: int = DEFAULT_HTTP_PORT
    stream_port: int = DEFAULT_STREAM_PORT
    data_dir: Path | None = None
    builtins: tuple[str, ...] | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    namespace_grace_ms: int = DEFAULT_NAMESPACE_GRACE_MS
    log_level: str = "INFO"
    auth_token: str | None = field(default=None, repr=False)
    stall_timeout_ms: int = DEFAULT_STALL_TIMEOUT_MS
    max_registrations_per_worker: int = 10_000
    source: Path | None = None
    explicit: frozenset[str] = field(default_factory=frozenset, repr=False)

    def section(self, name: str) -> Mapping[str, Any]:
        """The table ``[name]`` of the configuration file (empty when absent)."""
        return self.sections.get(name, {})

    def enabled(self, name: str, section: str, *, default: bool) -> bool:
        """Whether the built-in ``name`` (table ``section``) should run."""
        table = self.sections.get(section, {})
        explicit = table.get("enabled")
        if isinstance(explicit, bool):
            return explicit
        if self.builtins is not None:
            return name in self.builtins or section in self.builtins
        return default

    @classmethod
    def build(
        cls,
        *,
        file: str | os.PathLike[str] | None = None,
        host: str | None = None,
        port: int | None = None,
        http_port: int | None = None,
        stream_port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        log_level: str | None = None,
        auth_token: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> EngineConfig:
        """Combine defaults, an optional ``engine.toml``, the environment and explicit values.

        ``port=0`` (from the arguments or the file) makes every port that was not set
        explicitly (argument or file) 0 as well (decisions "Engine command line").

        Raises:
            ConfigError: unreadable or invalid file, or a bad value.
        """
        env = os.environ if environ is None else environ
        config = load_config(file) if file is not None else cls()
        explicit = set(config.explicit)
        if host is not None:
            config.host = host
        if port is not None:
            config.port = port
            explicit.add("port")
        if http_port is not None:
            config.http_port = http_port
            explicit.add("http_port")
        if stream_port is not None:
            config.stream_port = stream_port
            explicit.add("stream_port")
        if data_dir is not None:
            config.data_dir = Path(data_dir)
        config.explicit = frozenset(explicit)
        if config.port == 0:
            if "http_port" not in explicit:
                config.http_port = 0
            if "stream_port" not in explicit:
                config.stream_port = 0
        grace = env.get("III_NAMESPACE_GRACE_MS")
        if grace:
            try:
                config.namespace_grace_ms = int(grace)
            except ValueError:
                raise ConfigError(f"III_NAMESPACE_GRACE_MS must be an integer, got {grace!r}") from None
        stall = env.get("III_STALL_TIMEOUT_MS")
        if stall:
            try:
                config.stall_timeout_ms = int(stall)
            except ValueError:
                raise ConfigError(f"III_STALL_TIMEOUT_MS must be an integer, got {stall!r}") from None
        level = log_level or env.get("III_LOG")
        if level:
            config.log_level = level
        token = auth_token if auth_token is not None else env.get("III_ENGINE_TOKEN")
        if token is not None:
            config.auth_token = token
        config.validate()
        return config

    def validate(self) -> None:
        """Check ranges.

        Raises:
            ConfigError: a port outside 0-65535 or a negative grace period.
        """
        for key in ("port", "http_port", "stream_port"):
            value = getattr(self, key)
            if not 0 <= value <= 65535:
                raise ConfigError(f"{key} must be between 0 and 65535, got {value}")
        if self.namespace_grace_ms < 0:
            raise ConfigError(f"namespace_grace_ms must be >= 0, got {self.namespace_grace_ms}")
        if self.stall_timeout_ms <= 0:
            raise ConfigError(f"stall_timeout_ms must be > 0, got {self.stall_timeout_ms}")
        if self.max_registrations_per_worker <= 0:
            raise ConfigError(
                f"max_registrations_per_worker must be > 0, got {self.max_registrations_per_worker}"
            )
        token = self.auth_token
        if token is not None and (not token.strip() or token != token.strip() or not token.isprintable()):
            raise ConfigError(
                "auth_token must be a non-blank printable token without surrounding whitespace "
                "(from --token, III_ENGINE_TOKEN or engine.auth_token)"
            )


def load_config(path: str | os.PathLike[str]) -> EngineConfig:
    """Read an ``engine.toml``.

    Args:
        path: The file.

    Returns:
        The configuration; keys set in ``[engine]`` count as explicit for the ``port = 0`` rule.

    Raises:
        ConfigError: the file is missing or not TOML, ``[engine]`` has an unknown key or a value
            of the wrong type, or a built-in table is not a table.
    """
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    config = EngineConfig(source=file)
    explicit: set[str] = set()
    engine = raw.pop("engine", {})
    if not isinstance(engine, dict):
        raise ConfigError(f"{file}: [engine] must be a table")
    for key, raw_value in engine.items():
        value: Any = raw_value
        expected = _ENGINE_KEYS.get(key)
        if expected is None:
            known = ", ".join(sorted(_ENGINE_KEYS))
            raise ConfigError(f"{file}: unknown key engine.{key} (known: {known})")
        if not isinstance(raw_value, expected) or (expected is int and isinstance(raw_value, bool)):
            raise ConfigError(f"{file}: engine.{key} must be {expected.__name__}, got {type(value).__name__}")
        explicit.add(key)
        if key == "data_dir":
            data_dir = Path(value)
            config.data_dir = data_dir if data_dir.is_absolute() else (file.parent / data_dir)
        elif key == "builtins":
            if not all(isinstance(item, str) for item in value):
                raise ConfigError(f"{file}: engine.builtins must be a list of names")
            config.builtins = tuple(value)
        else:
            setattr(config, key, value)
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{file}: top-level key {name!r} must be a table ([{name}])")
        enabled = table.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise ConfigError(f"{file}: {name}.enabled must be true or false")
        config.sections[name] = table
    config.explicit = frozenset(explicit)
    config.validate()
    return config
