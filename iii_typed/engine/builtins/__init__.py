"""Built-in workers of the dev engine, one module each (interface: :mod:`.base`).

A module here that defines ``BUILTIN = <BuiltinWorker subclass>`` is discovered by
:func:`discover`; the engine then runs it when the configuration enables it (see
:class:`~iii_typed.engine.config.EngineConfig`). Modules whose name starts with ``_`` and
``base`` are skipped.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

from .base import BuiltinWorker

__all__ = ["discover"]

log = logging.getLogger("iii_typed.engine")


def discover() -> list[type[BuiltinWorker]]:
    """Import every built-in module and return their worker classes, by ``order`` then name.

    A module that fails to import is logged at ERROR and skipped, so one broken built-in does
    not stop the engine.
    """
    found: dict[str, type[BuiltinWorker]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception:
            log.exception("built-in worker module %s failed to import; skipped", info.name)
            continue
        worker = getattr(module, "BUILTIN", None)
        if isinstance(worker, type) and issubclass(worker, BuiltinWorker):
            found[worker.name] = worker
    return sorted(found.values(), key=lambda cls: (cls.order, cls.name))
