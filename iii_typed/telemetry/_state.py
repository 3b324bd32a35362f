"""The process's telemetry hub, kept in a module without heavy imports.

:mod:`iii_typed.logger` and the client check it on every call; OpenTelemetry's SDK is only imported
once a client turns telemetry on (:func:`iii_typed.telemetry.client_telemetry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._hub import TelemetryHub

__all__ = ["HUB"]

#: The hub once a client turned telemetry on, else ``None``.
HUB: TelemetryHub | None = None
