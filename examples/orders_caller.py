"""Example caller: drives the orders worker through the engine and prints what comes back."""

from __future__ import annotations

from iii_typed import InitOptions, InvocationError, register_worker


def main() -> None:
    with register_worker(options=InitOptions(worker_name="orders-caller")) as iii:
        order = iii.trigger(
            {
                "function_id": "orders::create",
                "payload": {
                    "customer": "ada",
                    "items": [{"sku": "tea", "quantity": 2, "unit_price_cents": 450}],
                },
            }
        )
        print(f"created {order['id']}: total {order['total_cents']} cents, status {order['status']}")
        print("fetched", iii.trigger({"function_id": "orders::get", "payload": {"id": order["id"]}})["id"])
        print(
            "cancelled ->",
            iii.trigger({"function_id": "orders::cancel", "payload": {"id": order["id"]}})["status"],
        )
        listing = iii.trigger({"function_id": "orders::list", "payload": {"customer": "ada"}})
        print(f"ada has {listing['count']} order(s)")
        try:
            iii.trigger({"function_id": "orders::create", "payload": {"customer": "", "items": []}})
        except InvocationError as exc:
            print(f"invalid input refused: {exc.code}: {exc.message.splitlines()[0]}")


if __name__ == "__main__":
    main()
