"""Example caller: drives the orders worker through the generated typed client.

``orders_client.py`` is generated from the engine's catalog (``make codegen``), so every call
below is checked by mypy and validated at run time: requests before they are sent, results
against the function's registered response schema. It also shows the other ways in: the
engine's HTTP port, a live stream subscription, and a channel.

    III_URL=ws://127.0.0.1:49134 III_HTTP_URL=http://127.0.0.1:3111 \
    III_STREAMS_URL=ws://127.0.0.1:3112 python examples/orders_caller.py
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import aiohttp
import websockets
from orders_client import AsyncClient, Client, CreateOrderInput, GetOrderInput, LineItem, ListOrdersInput

from iii_typed import III, InitOptions, InvocationError, register_worker

HTTP_URL = os.environ.get("III_HTTP_URL", "http://127.0.0.1:3111")
STREAMS_URL = os.environ.get("III_STREAMS_URL", "ws://127.0.0.1:3112")


def typed_calls(iii: III) -> str:
    """The typed client, sync and async; returns the id of the first order."""
    orders = Client(iii).orders
    order = orders.create(
        CreateOrderInput(customer="ada", items=[LineItem(sku="tea", quantity=2, unit_price_cents=450)])
    )
    print(f"created {order.id}: total {order.total_cents} cents, status {order.status}")
    print(f"fetched {orders.get(GetOrderInput(id=order.id)).id} (created {order.created_at:%H:%M:%S} UTC)")
    print(f"cancelled -> {orders.cancel(GetOrderInput(id=order.id)).status}")
    try:
        orders.get(GetOrderInput(id="ord_9999"))  # fails on purpose: there is no such order
    except InvocationError as exc:
        print(
            f"fetching ord_9999 fails on purpose (no such order; the one failed call in the "
            f"dashboard's 'error %'): {exc.code}: {exc.message}"
        )

    async def concurrently() -> list[str]:
        client = AsyncClient(iii).orders
        items = [LineItem(sku=s, quantity=1, unit_price_cents=100) for s in ("a", "b", "c")]
        made = await asyncio.gather(
            *(client.create(CreateOrderInput(customer="bob", items=[i])) for i in items)
        )
        return [o.id for o in made]

    print(f"async client created {asyncio.run(concurrently())} concurrently")
    listing = orders.list(ListOrdersInput(status="open"))
    print(f"{listing.count} open order(s): {[o.id for o in listing.orders]}")
    return order.id


async def live_stream_then_http(iii: III, order_id: str) -> None:
    """Subscribe to the orders stream, create an order, see it arrive; then GET it over HTTP."""
    async with websockets.connect(STREAMS_URL) as ws:
        join = {"subscriptionId": "demo", "streamName": "orders-live", "groupId": "all"}
        await ws.send(json.dumps({"type": "join", "data": join}))
        sync = json.loads(await asyncio.wait_for(ws.recv(), 10))
        print(f"stream subscriber: sync with {len(sync['event']['data'])} order(s) already there")
        created = await AsyncClient(iii).orders.create(
            CreateOrderInput(customer="cy", items=[LineItem(sku="mug", quantity=1, unit_price_cents=1200)])
        )
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        print(f"stream subscriber: live {event['event']['type']} of {event['id']} (we created {created.id})")
    async with aiohttp.ClientSession() as http:
        for oid in (order_id, "ord_9999"):
            async with http.get(f"{HTTP_URL}/orders/{oid}") as resp:
                body = await resp.json()
                print(f"GET /orders/{oid} -> {resp.status} {body.get('status', body.get('error'))}")


def export_through_channel(iii: III) -> None:
    """Pass a channel's writer to ``orders::export`` and read the CSV on our side."""
    channel = iii.create_channel()
    result = iii.trigger({"function_id": "orders::export", "payload": {"output": channel.writer_ref}})
    csv = channel.reader.read_all().decode()
    header = csv.splitlines()[0]
    print(f"export through a channel: {result['rows']} rows, {result['bytes']} bytes; header {header!r}")


def wait_for_receipts(iii: III, expected: int, timeout: float = 15.0) -> None:
    """The queue delivers the receipt jobs asynchronously: wait (bounded) until all were sent."""
    deadline = time.monotonic() + timeout
    sent: list[Any] = []
    while time.monotonic() < deadline:
        sent = iii.trigger({"function_id": "state::list", "payload": {"scope": "orders-receipts"}})
        if len(sent) >= expected:
            break
        time.sleep(0.05)
    print(f"queue: {len(sent)} receipt job(s) delivered through the 'receipts' queue")
    if len(sent) < expected:
        raise SystemExit(f"only {len(sent)} of {expected} receipts were sent within {timeout:.0f} s")


def main() -> None:
    with register_worker(options=InitOptions(worker_name="orders-caller")) as iii:
        first = typed_calls(iii)
        asyncio.run(live_stream_then_http(iii, first))
        export_through_channel(iii)
        wait_for_receipts(iii, expected=5)


if __name__ == "__main__":
    main()
