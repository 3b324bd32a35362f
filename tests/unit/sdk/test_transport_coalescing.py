"""Write coalescing of the worker connections (iii_typed._transport), against a recording transport."""

from __future__ import annotations

import asyncio
from typing import Any

from iii_typed._transport import FLUSH_AT_BYTES, CoalescingTransport


class Recorder(asyncio.Transport):
    """Records what reaches the real transport."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", [bytes(d) for d in list_of_data]))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


async def test_the_first_write_goes_out_at_once_the_rest_of_the_iteration_as_one_call() -> None:
    real = Recorder()
    proxy = CoalescingTransport(real, asyncio.get_running_loop())
    for frame in (b"a", b"bb", b"ccc", b"d"):
        proxy.write(frame)
    assert real.calls == [("write", b"a")]  # a lone frame is not delayed
    assert proxy.get_write_buffer_size() == 6
    await asyncio.sleep(0)
    assert real.calls == [("write", b"a"), ("writelines", [b"bb", b"ccc", b"d"])]
    assert proxy.get_write_buffer_size() == 0
    proxy.write(b"e")
    proxy.write(b"f")
    await asyncio.sleep(0)
    assert real.calls[-2:] == [("write", b"e"), ("write", b"f")]  # one queued frame: written as is


async def test_large_writes_are_passed_on_at_once() -> None:
    real = Recorder()
    proxy = CoalescingTransport(real, asyncio.get_running_loop())
    proxy.write(b"w")
    proxy.write(b"x")
    proxy.write(b"y" * FLUSH_AT_BYTES)
    assert real.calls == [("write", b"w"), ("writelines", [b"x", b"y" * FLUSH_AT_BYTES])]
    await asyncio.sleep(0)  # the end of the iteration finds nothing left
    assert len(real.calls) == 2


async def test_close_and_eof_flush_first_abort_drops() -> None:
    real = Recorder()
    proxy = CoalescingTransport(real, asyncio.get_running_loop())
    proxy.write(b"first")
    proxy.write(b"bye")
    proxy.write_eof()
    assert real.calls == [("write", b"first"), ("write", b"bye"), ("write_eof", None)]
    proxy.write(b"closing frame")
    proxy.close()
    assert real.calls[-2:] == [("write", b"closing frame"), ("close", None)]
    other = Recorder()
    proxy = CoalescingTransport(other, asyncio.get_running_loop())
    proxy.write(b"sent")
    proxy.write(b"lost")
    proxy.abort()
    await asyncio.sleep(0)
    assert other.calls == [("write", b"sent"), ("abort", None)]


async def test_nothing_is_written_to_a_closing_transport() -> None:
    real = Recorder()
    proxy = CoalescingTransport(real, asyncio.get_running_loop())
    proxy.write(b"now")
    proxy.write(b"late")
    real.closing = True
    await asyncio.sleep(0)
    assert real.calls == [("write", b"now")]
