"""Checks shared by the built-ins for their ``engine.toml`` tables and their trigger configs.

A bad engine setting stops the engine at start-up with :class:`~iii_typed.engine.config.ConfigError`
(exit code 2, the message names the key); a bad trigger config refuses that one binding with
:class:`~iii_typed.engine.builtins.base.TriggerRegistrationError` (the registering worker gets
``trigger_registration_failed``) and the engine keeps serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import ConfigError
from .base import TriggerRegistrationError

__all__ = ["check_section", "check_trigger_config", "type_name"]


def type_name(value: Any) -> str:
    """The JSON type name of a value (``null``, ``boolean``, ``integer``, ``number``, …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _matches(value: Any, expected: type | tuple[type, ...]) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def _kind(expected: type | tuple[type, ...]) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a table",
        list: "a list",
    }
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)


def check_section(
    section: str, table: Mapping[str, Any], spec: Mapping[str, type | tuple[type, ...]]
) -> None:
    """Check the keys and value types of the ``engine.toml`` table ``[section]``.

    ``enabled`` is always allowed (a boolean).

    Raises:
        ConfigError: an unknown key (the message lists the known ones) or a value of the wrong type.
    """
    for key, value in table.items():
        if key == "enabled":
            continue
        expected = spec.get(key)
        if expected is None:
            known = ", ".join(["enabled", *sorted(spec)])
            raise ConfigError(f"[{section}] has an unknown key {key!r} (known: {known})")
        if not _matches(value, expected):
            raise ConfigError(f"[{section}] {key} must be {_kind(expected)}, got {type_name(value)}")


def check_trigger_config(
    trigger_type: str, config: Any, spec: Mapping[str, type | tuple[type, ...]]
) -> dict[str, Any]:
    """Check a binding's config object: known keys, JSON types.

    Args:
        trigger_type: For the messages.
        config: The binding's config; ``null`` counts as ``{}``.
        spec: Allowed keys and their Python types (``str``, ``int``, ``dict``…).

    Returns:
        The config as a dict.

    Raises:
        TriggerRegistrationError: not an object, an unknown key, or a value of the wrong type.
    """
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise TriggerRegistrationError(
            f"{trigger_type} trigger config must be an object, got {type_name(config)}"
        )
    for key, value in config.items():
        expected = spec.get(key)
        if expected is None:
            known = ", ".join(sorted(spec))
            raise TriggerRegistrationError(
                f"{trigger_type} trigger config has an unknown field {key!r} (known fields: {known})"
            )
        if not _matches(value, expected):
            json_kind = _kind(expected).replace("a table", "an object").replace("a list", "an array")
            raise TriggerRegistrationError(
                f"{trigger_type} trigger config field {key!r} must be {json_kind}, got {type_name(value)}"
            )
    return config
