"""Helpers for tests that run the official ``iii-sdk`` client next to ours."""

from __future__ import annotations

from typing import Any


def shutdown_official(client: Any) -> None:
    """Shut an official client down and close its event loop.

    ``iii-sdk`` 0.25's ``shutdown()`` stops its loop thread but never closes the loop it created,
    which then surfaces as ``ResourceWarning: unclosed event loop`` in whichever test happens to
    collect it.
    """
    client.shutdown()
    loop = getattr(client, "_loop", None)
    if loop is not None and not loop.is_running() and not loop.is_closed():
        loop.close()
