"""Negative typing test: each line marked ``# E: <code>`` must be reported by mypy with that code.

``# E[typed-init]: <code>`` lines are errors only when model constructors are typed: without the
pydantic mypy plugin, or with it and ``init_typed = true`` (docs/codegen.md "Type checking").
Checked by ``test_stubs_typing.py``; never run.
"""

# ruff: noqa: F841, B018 - the misuses are the point of this file

from __future__ import annotations

from typing_client import (
    Ack,
    AsyncClient,
    Client,
    CreateOrderInput,
    GetInput,
    HashIn,
    HttpPayload,
    NewOrderConfig,
    Order,
)

from iii_typed import III


def misuse(iii: III) -> None:
    client = Client(iii)
    request = CreateOrderInput(sku="a", quantity=1)
    client.shop.orders.creat(request)  # E: attr-defined
    client.shop.order.create(request)  # E: attr-defined
    client.shop.orders.create(GetInput(id="x"))  # E: arg-type
    client.shop.orders.create({"sku": "a", "quantity": 1})  # E: arg-type
    client.shop.orders.create(request, timeout="1s")  # E: call-arg
    client.shop.orders.create.enqueue(request)  # E: call-arg
    wrong: str = client.shop.orders.create(request)  # E: assignment
    order = client.shop.orders.get(GetInput(id="x"))
    count: int = order.sku  # E: assignment
    order.nope  # E: attr-defined
    CreateOrderInput(sku=1, quantity=2)  # E[typed-init]: arg-type
    CreateOrderInput(sku="a", quantity="many")  # E[typed-init]: arg-type
    client.shop.on_new_order("f", lambda o: Ack(ok=True), GetInput(id="x"))  # E: arg-type


async def async_misuse(iii: III) -> None:
    sync_client = Client(iii)
    await sync_client.shop.orders.create(CreateOrderInput(sku="a", quantity=1))  # E: misc
    client = AsyncClient(iii)
    order: Order = client.shop.orders.create(CreateOrderInput(sku="a", quantity=1))  # E: assignment

    def handler(config: NewOrderConfig) -> Ack:
        return Ack(ok=True)

    client.shop.on_new_order("f", handler, NewOrderConfig(min_quantity=1))  # E: arg-type


def channel_misuse(iii: III) -> None:
    ch = iii.create_channel()
    HashIn(src=ch.writer, label="x")  # E[typed-init]: arg-type
    HashIn(src="not a ref", label="x")  # E[typed-init]: arg-type

    def route(request: HttpPayload) -> None:
        assert request.request_body is not None
        request.request_body.get("channel_id")  # E: attr-defined
