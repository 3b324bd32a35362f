"""The embedded iii dev engine: a Python server speaking the iii worker protocol.

* :class:`Engine` — run it in-process (``async with Engine(EngineConfig(port=0)) as engine``).
* :class:`EngineProcess` — run it as a child process (tests, demo).
* ``iii-typed engine`` / ``python -m iii_typed.engine`` — the command line.

Built-in workers implement :class:`~iii_typed.engine.builtins.base.BuiltinWorker`.
"""

from __future__ import annotations

from .config import ConfigError, EngineConfig, load_config
from .process import EngineProcess, EngineStartError
from .server import ENGINE_VERSION, Engine

__all__ = [
    "ENGINE_VERSION",
    "ConfigError",
    "Engine",
    "EngineConfig",
    "EngineProcess",
    "EngineStartError",
    "load_config",
]
