"""Channel refs without sockets: detection, resolution at the payload seam, URLs (protocol.md §4.8,
§5.2, golden frame C01) and the ``engine::channels::create`` request (G25)."""

from __future__ import annotations

from typing import Any

import pytest

from iii_typed import ChannelReader, ChannelWriter, InitOptions
from iii_typed._handlers import transform_incoming_payload
from iii_typed._loop import LoopThread
from iii_typed.channels import ChannelFactory, StreamChannelRef, _channel_url, create_request, is_channel_ref
from iii_typed.engine.builtins.channels import effective_buffer

REF = {"channel_id": "a88d67a4-da79-4e2d-bd3f-661f93cf3b06", "access_key": "3d47/6f+4e", "direction": "read"}


@pytest.fixture(scope="module")
def factory() -> Any:
    loop = LoopThread()
    yield ChannelFactory("ws://127.0.0.1:49134", InitOptions(), loop)
    loop.stop()


def test_is_channel_ref() -> None:
    assert is_channel_ref(REF)
    assert is_channel_ref({**REF, "extra": 1})
    assert not is_channel_ref({**REF, "direction": "both"})
    assert not is_channel_ref({**REF, "channel_id": 7})
    assert not is_channel_ref({"channel_id": "x", "access_key": "y"})
    assert not is_channel_ref([REF])


def test_payloads_without_refs_are_returned_untouched(factory: ChannelFactory) -> None:
    payload = {"a": [1, {"b": {"c": "d"}}], "e": None, "f": "channel_id"}
    assert transform_incoming_payload(payload, factory) is payload
    assert transform_incoming_payload([payload], factory)[0] is payload
    assert transform_incoming_payload("text", factory) == "text"
    assert transform_incoming_payload(payload) is payload  # no factory: nothing to do


def test_refs_at_any_depth_become_live_sides_copy_on_write(factory: ChannelFactory) -> None:
    untouched = {"x": [1, 2]}
    payload = {"keep": untouched, "deep": [{"r": REF}, {"w": {**REF, "direction": "write"}}], "top": REF}
    out = transform_incoming_payload(payload, factory)
    assert out is not payload and payload["top"] is REF  # the input is not modified
    assert out["keep"] is untouched
    assert isinstance(out["top"], ChannelReader) and isinstance(out["deep"][0]["r"], ChannelReader)
    assert isinstance(out["deep"][1]["w"], ChannelWriter)
    assert out["top"].ref == StreamChannelRef.model_validate(REF)
    assert isinstance(transform_incoming_payload(REF, factory), ChannelReader)


def test_channel_url_keeps_the_engine_query_and_escapes_the_key() -> None:
    ref = StreamChannelRef(channel_id="c1", access_key="k/+ =", direction="write")
    assert (
        _channel_url("ws://127.0.0.1:49134", ref)
        == "ws://127.0.0.1:49134/ws/channels/c1?key=k%2F%2B%20%3D&dir=write"
    )
    assert (
        _channel_url("ws://h:1/?token=t", ref)
        == "ws://h:1/ws/channels/c1?token=t&key=k%2F%2B%20%3D&dir=write"
    )


def test_channel_url_escapes_the_id_of_a_hostile_ref() -> None:
    """A ref's ``channel_id`` comes from the caller's payload. Unescaped, ``"a b"`` made an invalid
    request line and ``"x?key=k&dir=read#"`` replaced the query (both failed with websockets'
    own exceptions, not an IIIError); escaped, the engine simply answers 404."""
    for channel_id, path in (
        ("a b", "a%20b"),
        ("x?key=k&dir=read#", "x%3Fkey%3Dk%26dir%3Dread%23"),
        ("../o", "..%2Fo"),
    ):
        ref = StreamChannelRef(channel_id=channel_id, access_key="k", direction="read")
        assert _channel_url("ws://h:1", ref) == f"ws://h:1/ws/channels/{path}?key=k&dir=read"


def test_create_request_matches_g25_and_checks_the_size() -> None:
    assert create_request(16) == {"function_id": "engine::channels::create", "payload": {"buffer_size": 16}}
    assert create_request(None)["payload"] == {"buffer_size": None}
    with pytest.raises(ValueError):
        create_request(-1)
    with pytest.raises(TypeError):
        create_request(True)


@pytest.mark.parametrize(
    ("asked", "effective"), [(None, 64), (0, 1), (1, 1), (64, 64), (1024, 1024), (5000, 1024)]
)
def test_effective_buffer(asked: int | None, effective: int) -> None:
    assert effective_buffer(asked) == effective
