"""Reusable widgets: a keyed table updated in place, a line-API ring view, the status banner."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["Formatter", "KeyedTable", "RingView"]

#: Turns one item into ``(text, component class)`` segments ("" = the widget's base style).
Formatter = Callable[[Any], list[tuple[str, str]]]


class RingView(ScrollView, can_focus=True):
    """A virtual list of items rendered with the line API: only visible rows are drawn.

    It follows the end (tail) until the user moves the cursor or pauses; while paused, new items
    are counted (``new_count``) and the view stays on the same items even as old ones are
    evicted from the ring. ``wrap`` breaks long items over several rows.

    Args:
        formatter: Item → segments.
        max_lines: Ring size for :meth:`write_line` (the log-pane use).
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "ring--cursor",
        "ring--error",
        "ring--warn",
        "ring--ok",
        "ring--running",
        "ring--dim",
        "ring--critical",
        "ring--bar",
    }

    DEFAULT_CSS = """
    RingView { height: 1fr; }
    RingView > .ring--cursor { background: $accent 25%; }
    RingView > .ring--error { color: $error; }
    RingView > .ring--warn { color: $warning; }
    RingView > .ring--ok { color: $success; }
    RingView > .ring--running { color: $primary; }
    RingView > .ring--dim { color: $text-muted; }
    RingView > .ring--critical { color: $accent; text-style: bold; }
    RingView > .ring--bar { color: $primary; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor(-20)", "Page up", show=False),
        Binding("pagedown", "cursor(20)", "Page down", show=False),
        Binding("home", "top", "Top", show=False),
        Binding("end,G", "follow", "Follow", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    class Selected(Message):
        """The user pressed Enter on an item."""

        def __init__(self, view: RingView, item: Any) -> None:
            super().__init__()
            self.view = view
            self.item = item

    class FollowChanged(Message):
        """Follow mode went on or off."""

        def __init__(self, view: RingView, follow: bool) -> None:
            super().__init__()
            self.view = view
            self.follow = follow

    def __init__(
        self, formatter: Formatter | None = None, *, max_lines: int = 1000, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.formatter: Formatter = formatter or (lambda item: [(str(item), "")])
        self.items: Sequence[Any] = []
        self.cursor: int | None = None
        self.follow = True
        self.wrap = False
        self.new_count = 0
        self._own: deque[str] = deque(maxlen=max_lines)
        self._wrap_rows: list[tuple[int, int]] = []
        self._wrap_width = 0

    # -- data ----------------------------------------------------------------------------------
    def write_line(self, line: str) -> None:
        """Append one line to the view's own ring (``max_lines`` newest are kept)."""
        self._own.append(line)
        self.set_items(list(self._own), appended=1)

    @property
    def lines(self) -> list[str]:
        """The lines written with :meth:`write_line`."""
        return list(self._own)

    def _find(self, item: Any, hint: int) -> int | None:
        items = self.items
        for i in range(min(hint, len(items) - 1), -1, -1):
            if items[i] is item:
                return i
        return None

    def set_items(self, items: Sequence[Any], appended: int = 0) -> None:
        """Show ``items`` (oldest first); ``appended`` counts the new ones (for "N new")."""
        old = self.items
        selected = old[self.cursor] if self.cursor is not None and self.cursor < len(old) else None
        top_index = int(self.scroll_y)
        top = old[top_index] if not self.wrap and 0 <= top_index < len(old) else None
        self.items = items
        if self.follow:
            self.cursor = None
            self.new_count = 0
        else:
            self.new_count += appended
            if selected is not None:
                self.cursor = self._find(selected, self.cursor or 0)
            if self.cursor is not None and self.cursor >= len(items):
                self.cursor = len(items) - 1 if items else None
        self._update_size()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        elif top is not None:
            new_top = self._find(top, top_index)
            if new_top is not None and new_top != top_index:
                self.scroll_to(y=new_top, animate=False, immediate=True)
        self.refresh()

    def _update_size(self) -> None:
        width = max(1, self.scrollable_content_region.width or self.size.width or 80)
        if self.wrap:
            self._wrap_rows = []
            for index, item in enumerate(self.items):
                length = sum(cell_len(text) for text, _ in self.formatter(item))
                chunks = max(1, -(-length // width))
                self._wrap_rows.extend((index, c) for c in range(chunks))
            self._wrap_width = width
            rows = len(self._wrap_rows)
        else:
            rows = len(self.items)
        self.virtual_size = Size(width, rows)

    def on_resize(self) -> None:
        self._update_size()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def set_wrap(self, wrap: bool) -> None:
        """Turn wrapping of long items on or off."""
        self.wrap = wrap
        self._update_size()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        self.refresh()

    @property
    def selected(self) -> Any:
        """The item under the cursor (the newest item while following)."""
        if self.cursor is not None and 0 <= self.cursor < len(self.items):
            return self.items[self.cursor]
        return self.items[-1] if self.items else None

    # -- rendering -----------------------------------------------------------------------------
    def _item_row(self, y: int) -> tuple[int, int] | None:
        if self.wrap:
            return self._wrap_rows[y] if 0 <= y < len(self._wrap_rows) else None
        return (y, 0) if 0 <= y < len(self.items) else None

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        base = self.rich_style
        located = self._item_row(int(self.scroll_y) + y)
        if located is None:
            return Strip.blank(width, base)
        index, chunk = located
        styles: dict[str, Style] = {}
        cursor = index == self.cursor

        def style_of(name: str) -> Style:
            if name not in styles:
                styles[name] = base + self.get_component_rich_style(name) if name else base
            return styles[name]

        segments = [Segment(text, style_of(cls)) for text, cls in self.formatter(self.items[index]) if text]
        if self.wrap:
            start = chunk * width
            strip = Strip(segments).crop_extend(start, start + width, base)
            if cursor:
                strip = strip.apply_style(self.get_component_rich_style("ring--cursor"))
            return strip
        # one Strip per row (each Strip carries several caches): cut or pad the segments here
        line = Segment.adjust_line_length(segments, width, base)
        if cursor:
            line = list(Segment.apply_style(line, self.get_component_rich_style("ring--cursor")))
        return Strip(line, width)

    def visible_text_lines(self) -> list[str]:
        """The text of the rows on screen (blank rows dropped)."""
        height = self.scrollable_content_region.height or self.size.height
        lines = [self.render_line(y).text.rstrip() for y in range(height)]
        return [line for line in lines if line]

    # -- actions -------------------------------------------------------------------------------
    def _set_follow(self, follow: bool) -> None:
        if follow != self.follow:
            self.follow = follow
            self.post_message(self.FollowChanged(self, follow))

    def pause(self) -> None:
        """Stop following the end (the cursor stays on the newest item)."""
        if self.follow:
            self.cursor = len(self.items) - 1 if self.items else None
            self.new_count = 0
            self._set_follow(False)
            self.refresh()

    def action_follow(self) -> None:
        """Follow the end again."""
        self.cursor = None
        self.new_count = 0
        self._set_follow(True)
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        self.refresh()

    def toggle_follow(self) -> None:
        """Pause or resume."""
        if self.follow:
            self.pause()
        else:
            self.action_follow()

    def action_top(self) -> None:
        """Go to the oldest item (pauses)."""
        self.pause()
        self.cursor = 0 if self.items else None
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        """Move the cursor (pauses following)."""
        if not self.items:
            return
        self.pause()
        current = self.cursor if self.cursor is not None else len(self.items) - 1
        self.cursor = max(0, min(len(self.items) - 1, current + delta))
        self._scroll_to_cursor()
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        if self.cursor is None:
            return
        row = self.cursor
        if self.wrap:
            row = next((i for i, (idx, _) in enumerate(self._wrap_rows) if idx == self.cursor), 0)
        height = self.scrollable_content_region.height or 1
        if row < self.scroll_y:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= self.scroll_y + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)

    def action_select(self) -> None:
        """Open the item under the cursor."""
        item = self.selected
        if item is not None:
            self.post_message(self.Selected(self, item))


_ROW_STYLES = {"error": "ring--error", "warn": "ring--warn", "ok": "ring--ok"}


class KeyedTable(RingView):
    """A keyed table drawn with the line API: only the visible rows are rendered, so a catalog
    of 10,000 functions paints as fast as one of ten (tui.md §3.2; cases.md B17).

    ``sync(rows)`` replaces the content; the cursor stays on the same key. The header row is
    sticky. Enter posts :class:`KeyedTable.RowSelected`; cursor moves post
    :class:`KeyedTable.RowHighlighted`.

    Args:
        columns: Column titles.
        max_cell: Longest cell shown (longer values end in ``…``; the text snapshot has them whole).
    """

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    KeyedTable > .ring--header { text-style: bold; color: $text-muted; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {*RingView.COMPONENT_CLASSES, "ring--header"}

    class RowHighlighted(Message):
        """The cursor moved to another row."""

        def __init__(self, table: KeyedTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> KeyedTable:
            """The table."""
            return self.table

    class RowSelected(Message):
        """Enter on a row."""

        def __init__(self, table: KeyedTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> KeyedTable:
            """The table."""
            return self.table

    def __init__(self, columns: Sequence[str], *, id: str | None = None, max_cell: int = 44) -> None:
        super().__init__(self._format, id=id)
        self.column_names = tuple(columns)
        self.max_cell = max_cell
        self.follow = False
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._widths = [len(c) for c in self.column_names]
        self._last_key: str | None = None
        self.rebuilds = 0

    # -- data ----------------------------------------------------------------------------------
    def _cut(self, cell: str) -> str:
        return cell if len(cell) <= self.max_cell else cell[: self.max_cell - 1] + "…"

    def _format(self, row: Any) -> list[tuple[str, str]]:
        cls = {"error": "ring--error", "warn": "ring--warn", "ok": "ring--ok"}.get(
            getattr(row, "style", ""), ""
        )
        parts: list[tuple[str, str]] = [(" ", "")]
        for i, cell in enumerate(row.cells):
            text = self._cut(cell)
            width = self._widths[i] if i < len(self._widths) else len(text)
            parts.append((text.ljust(width) + "  ", cls))
        return parts

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._keys)

    @property
    def row_count(self) -> int:
        """Rows shown."""
        return len(self._keys)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor."""
        if self.cursor is None or not (0 <= self.cursor < len(self._keys)):
            return None
        return self._keys[self.cursor]

    def sync(self, rows: Sequence[Any]) -> None:
        """Show exactly ``rows`` (``views.Row`` s, in order; duplicate keys keep the first)."""
        selected = self.selected_key
        unique: list[Any] = []
        index: dict[str, int] = {}
        for r in rows:
            if r.key not in index:
                index[r.key] = len(unique)
                unique.append(r)
        keys = [r.key for r in unique]
        if keys != self._keys:
            self.rebuilds += 1
        widths = [len(c) for c in self.column_names]
        for r in unique:
            for i, cell in enumerate(r.cells[: len(widths)]):
                length = min(len(cell), self.max_cell)
                if length > widths[i]:
                    widths[i] = length
        self._widths = widths
        self._keys = keys
        self._index = index
        self.items = unique
        if selected is not None and selected in index:
            self.cursor = index[selected]
        elif unique:
            self.cursor = min(self.cursor or 0, len(unique) - 1)
        else:
            self.cursor = None
        self._update_size()
        self._scroll_to_cursor()
        self.refresh()
        self._notify_highlight()

    def select_key(self, key: str) -> bool:
        """Put the cursor on ``key``; ``False`` when it is not shown."""
        if key not in self._index:
            return False
        self.cursor = self._index[key]
        self._scroll_to_cursor()
        self.refresh()
        self._notify_highlight()
        return True

    def _notify_highlight(self) -> None:
        key = self.selected_key
        if key != self._last_key:
            self._last_key = key
            self.post_message(self.RowHighlighted(self, key))

    # -- rendering (sticky header) ---------------------------------------------------------------
    def _update_size(self) -> None:
        width = max(1, self.scrollable_content_region.width or self.size.width or 80)
        total = sum(self._widths) + 2 * len(self._widths) + 1
        self.virtual_size = Size(max(width, total), len(self.items) + 1)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        scroll_x = int(self.scroll_x)
        if y == 0:
            header = " " + "".join(
                n.ljust(w) + "  " for n, w in zip(self.column_names, self._widths, strict=False)
            )
            style = self.rich_style + self.get_component_rich_style("ring--header")
            return Strip([Segment(header, style)]).crop_extend(scroll_x, scroll_x + width, self.rich_style)
        located = self._item_row(int(self.scroll_y) + y - 1)
        if located is None:
            return Strip.blank(width, self.rich_style)
        index = located[0]
        base = self.rich_style
        segments = [
            Segment(text, base + self.get_component_rich_style(cls) if cls else base)
            for text, cls in self._format(self.items[index])
        ]
        strip = Strip(segments).crop_extend(scroll_x, scroll_x + width, base)
        if index == self.cursor:
            strip = strip.apply_style(self.get_component_rich_style("ring--cursor"))
        return strip

    def _scroll_to_cursor(self) -> None:
        if self.cursor is None:
            return
        height = max(1, (self.scrollable_content_region.height or 2) - 1)
        if self.cursor < self.scroll_y:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= self.scroll_y + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    # -- actions -------------------------------------------------------------------------------
    def on_resize(self) -> None:
        self._update_size()

    def action_cursor(self, delta: int) -> None:
        """Move the cursor."""
        if not self.items:
            return
        current = self.cursor if self.cursor is not None else 0
        self.cursor = max(0, min(len(self.items) - 1, current + delta))
        self._scroll_to_cursor()
        self.refresh()
        self._notify_highlight()

    def action_top(self) -> None:
        """First row."""
        self.action_cursor(-len(self.items))

    def action_follow(self) -> None:
        """Last row."""
        self.action_cursor(len(self.items))

    def action_select(self) -> None:
        """Enter on the row under the cursor."""
        key = self.selected_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def visible_rows(self) -> list[str]:
        """The text of the rows on screen, header first."""
        height = self.scrollable_content_region.height or self.size.height
        return [self.render_line(y).text.rstrip() for y in range(height)]
