"""Sans-I/O protocol core: frame models (generated from ``schema/``) and the codec.

Nothing under this package imports asyncio, threading, sockets or websockets (a test enforces it).
"""

from . import codec, frames

__all__ = ["codec", "frames"]
