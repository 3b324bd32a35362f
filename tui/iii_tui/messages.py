"""Messages the app posts to its screens."""

from __future__ import annotations

from textual.message import Message

__all__ = ["StoreChanged"]


class StoreChanged(Message):
    """A flush applied new events; ``sections`` names what changed (``clock`` = a second passed)."""

    def __init__(self, sections: frozenset[str]) -> None:
        super().__init__()
        self.sections = sections

    def can_replace(self, message: Message) -> bool:
        """A screen that fell behind handles one message for several flushes: a newer
        ``StoreChanged`` replaces this one and carries this one's sections too."""
        if isinstance(message, StoreChanged):
            message.sections = message.sections | self.sections
            return True
        return False
