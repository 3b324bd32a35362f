"""Helpers of the ``http`` / ``http-functions`` built-in tests: engine configs, route readiness, requests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from iii_typed import III
from tests.support.waiting import wait_for_async

__all__ = [
    "Reply",
    "fetch",
    "http_channels",
    "toml_value",
    "unique",
    "wait_bound",
    "wait_routes",
    "write_config",
]


def unique(prefix: str) -> str:
    """A fresh name, so tests sharing an engine never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, int, list or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"no TOML literal for {value!r}")


def write_config(path: Path, tables: dict[str, dict[str, Any]], text: str = "") -> Path:
    """Write an ``engine.toml`` with ``[table]`` sections (values as :func:`toml_value`) plus ``text``."""
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines) + text, encoding="utf-8")
    return path


async def wait_routes(iii: III, trigger_ids: Iterable[str], timeout: float = 10.0) -> None:
    """Wait until every binding is live at the engine (``engine::registered-triggers::list``).

    The engine does not acknowledge a successful ``registertrigger`` (protocol.md §2.5), so tests
    poll the catalog instead of sleeping.
    """
    wanted = set(trigger_ids)
    live: set[str] = set()

    async def all_live() -> bool:
        nonlocal live
        listed = await iii.trigger_async(
            {"function_id": "engine::registered-triggers::list", "payload": {"trigger_type": "http"}}
        )
        live = {row["id"] for row in listed["registered_triggers"]}
        return wanted <= live

    await wait_for_async(
        all_live, timeout=timeout, interval=0.02, what=lambda: f"routes not live: {sorted(wanted - live)}"
    )


class Reply:
    """A finished HTTP response: ``status``, ``headers``, ``body`` bytes and :meth:`json`."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:200]!r})"


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Reply:
    """One request, read to the end, with a 10 s bound."""
    kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=10))
    async with session.request(method, url, **kwargs) as response:
        body = await response.read()
        return Reply(response.status, response.headers, body)


async def wait_bound(iii: III, function_id: str, count: int = 1, timeout: float = 10.0) -> None:
    """Wait until ``count`` http bindings of ``function_id`` are live (for workers whose trigger
    handles carry no id, such as the official client's)."""

    async def bound() -> bool:
        listed = await iii.trigger_async(
            {
                "function_id": "engine::registered-triggers::list",
                "payload": {"trigger_type": "http", "function_id": function_id},
            }
        )
        return len(listed["registered_triggers"]) >= count

    await wait_for_async(
        bound, timeout=timeout, interval=0.02, what=f"{count} route(s) of {function_id} not live"
    )


async def http_channels(iii: III) -> list[dict[str, Any]]:
    """The channels the ``http`` built-in holds (``engine::channels::list`` rows owned by iii-http)."""
    listed = await iii.trigger_async({"function_id": "engine::channels::list", "payload": {}})
    return [row for row in listed["channels"] if row["owner"] == "iii-http"]
