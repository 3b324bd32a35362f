"""Example caller: drives the orders worker through the generated typed client.

``orders_client.py`` is generated from the engine's catalog (``make codegen``), so every call
below is checked by mypy and validated at run time: requests before they are sent, results
against the function's registered response schema.

    python examples/orders_caller.py            # III_URL defaults to ws://127.0.0.1:49134
"""

from __future__ import annotations

import asyncio

from orders_client import AsyncClient, Client, CreateOrderInput, GetOrderInput, LineItem, ListOrdersInput

from iii_typed import InitOptions, InvocationError, register_worker


def main() -> None:
    with register_worker(options=InitOptions(worker_name="orders-caller")) as iii:
        orders = Client(iii).orders
        order = orders.create(
            CreateOrderInput(customer="ada", items=[LineItem(sku="tea", quantity=2, unit_price_cents=450)])
        )
        print(f"created {order.id}: total {order.total_cents} cents, status {order.status}")
        print(f"fetched {orders.get(GetOrderInput(id=order.id)).id} (created {order.created_at:%H:%M:%S})")
        print(f"cancelled -> {orders.cancel(GetOrderInput(id=order.id)).status}")
        listing = orders.list(ListOrdersInput(customer="ada"))
        print(f"ada has {listing.count} order(s): {[o.id for o in listing.orders]}")

        try:
            orders.get(GetOrderInput(id="ord_9999"))
        except InvocationError as exc:
            print(f"unknown order refused by the worker: {exc.code}: {exc.message}")

        async def concurrently() -> list[str]:
            client = AsyncClient(iii).orders
            made = await asyncio.gather(
                *(
                    client.create(
                        CreateOrderInput(
                            customer="bob", items=[LineItem(sku=s, quantity=1, unit_price_cents=100)]
                        )
                    )
                    for s in ("a", "b", "c")
                )
            )
            return [o.id for o in made]

        print(f"async client created {asyncio.run(concurrently())} concurrently")


if __name__ == "__main__":
    main()
