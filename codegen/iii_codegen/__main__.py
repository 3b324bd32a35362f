"""``python -m iii_codegen``: the same commands as ``iii-typed codegen``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
