"""Invocation ids: UUID version 4 strings without a system call per id.

``uuid.uuid4()`` reads 16 bytes from ``os.urandom``: a system call that releases the GIL, which in
a busy client (the SDK's loop thread and the caller's thread) costs a thread hand-off per call
(perf.md §2.6). Invocation ids only need to be unique and well-formed (the engine requires UUIDs;
they are not secrets: the engine accepts a result only from the worker it sent the invocation
to), so they come from a private generator seeded from ``os.urandom`` (and re-seeded in a forked
child), not from the ``random`` module's shared one that user code may seed.
"""

from __future__ import annotations

import os
import random

__all__ = ["uuid4_str"]

_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)

_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


def uuid4_str() -> str:
    """A random UUID (version 4, RFC 4122 variant) in its canonical lowercase form."""
    h = ((_rng.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
