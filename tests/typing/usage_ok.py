"""Positive typing test: correct use of generated stubs (checked by mypy, never run).

``typing_client`` is generated from ``tests/typing/catalog.json`` by ``test_stubs_typing.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, assert_type

from typing_client import (
    Ack,
    AsyncClient,
    Client,
    CreateOrderInput,
    Found,
    GetInput,
    HashIn,
    HashOut,
    HttpConfig,
    HttpPayload,
    MaybeInput,
    NewOrderConfig,
    Order,
)

from iii_typed import III, ChannelReader, ChannelWriter, EnqueueResult
from iii_typed.http_response import HttpResponse, StreamingResponse


def sync_calls(iii: III) -> None:
    client = Client(iii)
    # Aliased fields (`class`, `content-type`) are built with their Python names.
    request = CreateOrderInput(sku="a-1", quantity=2, class_="gold", content_type="text/plain", tags=["x"])
    order = client.shop.orders.create(request)
    assert_type(order, Order)
    assert_type(order.created_at, datetime)
    assert_type(order.status, Literal["open", "cancelled"])
    assert_type(client.shop.orders.create(request, timeout_ms=500, metadata={"k": 1}), Order)
    assert_type(client.shop.orders.get(GetInput(id=order.id)), Order)
    assert_type(client.shop.orders.create.void(request), None)
    assert_type(client.shop.orders.create.enqueue(request, queue="orders"), EnqueueResult)
    assert_type(client.shop.maybe(MaybeInput(id="x")), Found | None)
    assert_type(client.shop.stats(None), int)
    assert_type(client.ping({"anything": [1, 2]}), Any)
    assert_type(client.shop.orders.create.function_id, str)


async def async_calls(iii: III) -> None:
    client = AsyncClient(iii, namespace="shop-ns")
    order = await client.shop.orders.create(CreateOrderInput(sku="a", quantity=1))
    assert_type(order, Order)
    assert_type(await client.shop.orders.create.void(CreateOrderInput(sku="a", quantity=1)), None)
    receipt = await client.shop.orders.create.enqueue(CreateOrderInput(sku="a", quantity=1), queue="q")
    assert_type(receipt.message_receipt_id, str)
    assert_type(await client.shop.maybe(MaybeInput(id="x")), Found | None)


def trigger_helpers(iii: III) -> None:
    def on_order(order: Order) -> Ack:
        return Ack(ok=order.status == "open")

    async def on_order_async(order: Order) -> Ack:
        return Ack(ok=True)

    Client(iii).shop.on_new_order("shop::audit", on_order, NewOrderConfig(min_quantity=1))
    AsyncClient(iii).shop.on_new_order("shop::audit-async", on_order_async, NewOrderConfig(min_quantity=2))


def channels(iii: III) -> None:
    # A caller passes the ref of the side the callee uses (or that side itself).
    ch = iii.create_channel()
    result = Client(iii).files.hash(HashIn(src=ch.reader_ref, label="x", sink=ch.writer_ref))
    assert_type(result, HashOut)
    HashIn(src=ch.reader, label="y", sink=ch.writer)


def http_helpers(iii: III) -> None:
    # The handler gets the live request body and response channel.
    def route(request: HttpPayload) -> HttpResponse:
        assert request.request_body is not None
        assert_type(request.request_body, ChannelReader)
        return HttpResponse(body={"size": len(request.request_body.read_all())})

    async def stream(request: HttpPayload) -> None:
        assert request.response is not None
        assert_type(request.response, ChannelWriter)
        async with StreamingResponse(request.response) as out:
            await out.write_async(b"chunk")

    Client(iii).on_http("helpers::route", route, HttpConfig(api_path="/helpers", http_method="POST"))
    AsyncClient(iii).on_http("helpers::stream", stream, HttpConfig(api_path="/stream"))
