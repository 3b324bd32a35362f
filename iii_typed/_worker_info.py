"""What a worker reports about itself: ``engine::workers::register`` data (protocol.md §3.3),
its name (decisions "Worker name") and its namespace (protocol.md §3.4)."""

from __future__ import annotations

import itertools
import os
import platform
import socket
import threading
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from .options import InitOptions

__all__ = [
    "FEATURES",
    "SDK_VERSION",
    "allocate_unnamed_suffix",
    "resolve_namespace",
    "resolve_worker_name",
    "worker_metadata",
]

#: Protocol features this SDK implements (reported in ``features``). ``large-messages.v1``: we
#: receive messages up to 64 MiB and send messages over 16 MiB as 1 MiB fragments. Observe and
#: local dispatch are out of scope (decisions "Public API").
FEATURES: Final[tuple[str, ...]] = ("large-messages.v1",)


def _sdk_version() -> str:
    try:
        return metadata.version("iii-typed")
    except metadata.PackageNotFoundError:
        return "unknown"


#: The installed iii-typed version (``unknown`` when not installed as a distribution).
SDK_VERSION: Final = _sdk_version()

_unnamed_counter = itertools.count(1)
_unnamed_lock = threading.Lock()


def allocate_unnamed_suffix() -> int:
    """A process-wide sequence number for clients without an explicit name (1, 2, 3, …)."""
    with _unnamed_lock:
        return next(_unnamed_counter)


def resolve_worker_name(options: InitOptions, unnamed_index: int) -> str:
    """Name precedence: non-blank ``III_WORKER_NAME``, then ``options.worker_name``, then
    ``hostname:pid`` (``hostname:pid:N`` for the N-th unnamed client of this process, N ≥ 2)."""
    env = os.environ.get("III_WORKER_NAME", "")
    if env.strip():
        return env
    if options.worker_name is not None and options.worker_name.strip():
        return options.worker_name
    base = f"{socket.gethostname()}:{os.getpid()}"
    return base if unnamed_index <= 1 else f"{base}:{unnamed_index}"


def resolve_namespace(options: InitOptions) -> str | None:
    """The worker's namespace: ``options.namespace`` (blank raises), else a non-blank
    ``III_NAMESPACE``, else ``None`` (the engine's ``default``).

    Raises:
        ValueError: ``options.namespace`` is blank.
    """
    if options.namespace is not None:
        if not options.namespace.strip():
            raise ValueError("InitOptions.namespace is blank: give it a name, or omit it to use 'default'")
        return options.namespace
    env = os.environ.get("III_NAMESPACE", "")
    return env if env.strip() else None


def _project_name() -> str:
    pyproject = Path.cwd() / "pyproject.toml"
    try:
        with pyproject.open("rb") as fh:
            name = tomllib.load(fh).get("project", {}).get("name")
        if isinstance(name, str) and name:
            return name
    except (OSError, tomllib.TOMLDecodeError):
        pass
    return Path.cwd().name


def _os_string() -> str:
    return f"{platform.system()} {platform.release()} ({platform.machine()})"


def worker_metadata(options: InitOptions, name: str, namespace: str | None) -> dict[str, Any]:
    """The ``data`` of the ``engine::workers::register`` call, keys in protocol.md §3.3 order."""
    telemetry = options.telemetry
    lang = os.environ.get("LANG", "").split(".", 1)[0] or None
    data: dict[str, Any] = {
        "runtime": "python",
        "version": SDK_VERSION,
        "name": name,
        "os": _os_string(),
        "pid": os.getpid(),
        "isolation": os.environ.get("III_ISOLATION") or None,
        "namespace": namespace,
        "telemetry": {
            "language": (telemetry.language if telemetry and telemetry.language else lang),
            "project_name": (
                telemetry.project_name if telemetry and telemetry.project_name else _project_name()
            ),
            "framework": (telemetry.framework if telemetry and telemetry.framework else "iii-typed"),
        },
        "features": list(FEATURES),
    }
    if options.worker_description is not None:
        data["description"] = options.worker_description
    return data
