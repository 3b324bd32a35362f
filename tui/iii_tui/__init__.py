"""iii-tui: a live terminal dashboard for an iii engine (Textual).

Layers: :mod:`iii_tui.source` (I/O, an SDK worker; no Textual), :mod:`iii_tui.store` (the model),
:mod:`iii_tui.views` (what each screen shows, also as text), :mod:`iii_tui.app` and
:mod:`iii_tui.screens` (Textual), :mod:`iii_tui.session` (record/replay), :mod:`iii_tui.cli`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
