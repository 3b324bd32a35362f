"""``python -m iii_tui``."""

from __future__ import annotations

from .cli import main

__all__: list[str] = []

raise SystemExit(main())
