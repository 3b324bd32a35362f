"""Example worker: an orders service built on the engine's built-in workers.

Run it against an engine started with the example configuration, which declares the ``receipts``
queue (without it the first order fails with ``enqueue_error: Queue 'receipts' is not
configured``)::

    iii-typed engine --config examples/engine.toml      # in another terminal
    python examples/orders_worker.py            # III_URL defaults to ws://127.0.0.1:49134

What it shows:

* typed handlers — pydantic request/response models, validated on the way in, schemas registered
  with the engine (so ``iii-typed codegen`` can generate ``examples/orders_client.py``);
* the ``state`` built-in as the order store (``state::update`` ops number the orders), and a
  ``state`` trigger reacting to every change;
* a queue: each new order enqueues a receipt job (``TriggerAction.Enqueue``) handled by a
  ``durable`` consumer with retries;
* a ``stream`` item per order, so subscribers of the stream port see orders appear live;
* an ``http`` trigger: ``GET /orders/:id`` on the engine's REST port;
* a channel: ``orders::export`` writes a CSV export into a channel passed by the caller;
* ``Logger`` records correlated with the invocation's trace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from iii_typed import III, ChannelWriter, InitOptions, Logger, TriggerAction, register_worker

ORDERS = "orders"  # state scope holding the orders
COUNTERS = "orders-meta"  # state scope holding the id counter
RECEIPTS = "orders-receipts"  # state scope where the receipt job records what it sent
LIVE_STREAM = "orders-live"  # stream name (group "all") mirrored for live subscribers
RECEIPT_QUEUE = "receipts"  # queue of the receipt jobs (configured in examples/engine.toml)

log = Logger(service_name="orders-worker")


class LineItem(BaseModel):
    """One product line of an order."""

    sku: str = Field(description="Stock keeping unit.")
    quantity: int = Field(ge=1, description="How many units.")
    unit_price_cents: int = Field(ge=0, description="Price of one unit, in cents.")


class CreateOrderInput(BaseModel):
    """Input of ``orders::create``."""

    customer: str = Field(min_length=1, description="Customer name or id.")
    items: list[LineItem] = Field(min_length=1)


class Order(BaseModel):
    """An order as stored by the service."""

    id: str
    customer: str
    items: list[LineItem]
    total_cents: int
    status: Literal["open", "cancelled"]
    created_at: datetime


class GetOrderInput(BaseModel):
    """Input of ``orders::get`` and ``orders::cancel``."""

    id: str


class ListOrdersInput(BaseModel):
    """Input of ``orders::list``."""

    customer: str | None = Field(default=None, description="Only this customer's orders.")
    status: Literal["open", "cancelled"] | None = None


class OrderList(BaseModel):
    """Result of ``orders::list``."""

    orders: list[Order]
    count: int


class ExportResult(BaseModel):
    """Result of ``orders::export``: how much was written into the channel."""

    rows: int
    bytes: int


class OrdersService:
    """The handlers; each one calls the engine's built-ins through ``iii``."""

    def __init__(self, iii: III) -> None:
        self.iii = iii

    def _state(self, function_id: str, **payload: Any) -> Any:
        return self.iii.trigger({"function_id": function_id, "payload": payload})

    def create(self, data: CreateOrderInput) -> Order:
        """Create an order; the total is computed from the line items."""
        counter = self._state(
            "state::update", scope=COUNTERS, key="next_id", ops=[{"type": "increment", "path": "", "by": 1}]
        )
        order = Order(
            id=f"ord_{counter['new_value']:04d}",
            customer=data.customer,
            items=data.items,
            total_cents=sum(i.quantity * i.unit_price_cents for i in data.items),
            status="open",
            created_at=datetime.now(UTC),
        )
        self._state("state::set", scope=ORDERS, key=order.id, value=order)
        self._state("stream::set", stream_name=LIVE_STREAM, group_id="all", item_id=order.id, data=order)
        receipt = self.iii.trigger(
            {
                "function_id": "orders::send_receipt",
                "payload": {"order_id": order.id, "customer": order.customer},
                "action": TriggerAction.Enqueue(queue=RECEIPT_QUEUE),
            }
        )
        log.info("order created", {"order_id": order.id, "receipt_job": receipt.message_receipt_id})
        return order

    def get(self, data: GetOrderInput) -> Order:
        """Fetch one order by id (an unknown id is an error)."""
        stored = self._state("state::get", scope=ORDERS, key=data.id)
        if stored is None:
            log.warn("unknown order requested", {"order_id": data.id})
            raise LookupError(f"order {data.id!r} does not exist")
        return Order.model_validate(stored)

    def list(self, data: ListOrdersInput) -> OrderList:
        """List orders, optionally filtered by customer and status."""
        found = [
            order
            for order in map(Order.model_validate, self._state("state::list", scope=ORDERS))
            if (data.customer is None or order.customer == data.customer)
            and (data.status is None or order.status == data.status)
        ]
        return OrderList(orders=sorted(found, key=lambda o: o.id), count=len(found))

    def cancel(self, data: GetOrderInput) -> Order:
        """Cancel an order (a ``state::update`` set op on its ``status``)."""
        self.get(data)  # raises for an unknown id
        updated = self._state(
            "state::update",
            scope=ORDERS,
            key=data.id,
            ops=[{"type": "set", "path": "status", "value": "cancelled"}],
        )
        order = Order.model_validate(updated["new_value"])
        self._state("stream::set", stream_name=LIVE_STREAM, group_id="all", item_id=order.id, data=order)
        return order

    def send_receipt(self, data: dict[str, Any]) -> None:
        """Queue consumer: 'send' the receipt and record it (runs once per enqueued job)."""
        self._state("state::set", scope=RECEIPTS, key=data["order_id"], value={"to": data["customer"]})
        log.info("receipt sent", data)

    def on_change(self, event: dict[str, Any]) -> None:
        """``state`` trigger on the orders scope: one call per created/updated/deleted order."""
        log.info(
            f"{event['event_type']} {event['key']}", {"status": (event.get("new_value") or {}).get("status")}
        )

    def http_get(self, request: dict[str, Any]) -> dict[str, Any]:
        """``GET /orders/:id`` on the engine's REST port: 200 with the order, or 404."""
        stored = self._state("state::get", scope=ORDERS, key=request["path_params"]["id"])
        if stored is None:
            return {"status_code": 404, "body": {"error": "no such order"}}
        return {"status_code": 200, "body": stored}

    def export(self, data: dict[str, Any]) -> ExportResult:
        """Write every order as a CSV row into the channel passed as ``output``."""
        out: ChannelWriter = data["output"]  # a writer ref arrives as a live ChannelWriter
        rows = self.list(ListOrdersInput()).orders
        written = 0
        with out:
            for line in ["id,customer,total_cents,status"] + [
                f"{o.id},{o.customer},{o.total_cents},{o.status}" for o in rows
            ]:
                chunk = (line + "\n").encode()
                out.write(chunk)
                written += len(chunk)
        return ExportResult(rows=len(rows), bytes=written)


def register(iii: III) -> None:
    """Register the functions and triggers of the service on ``iii``."""
    svc = OrdersService(iii)
    iii.register_function("orders::create", svc.create, description="Create an order")
    iii.register_function("orders::get", svc.get, description="Fetch one order by id")
    iii.register_function("orders::list", svc.list, description="List orders")
    iii.register_function("orders::cancel", svc.cancel, description="Cancel an order")
    iii.register_function("orders::export", svc.export, description="Export orders as CSV into a channel")
    iii.register_function(
        "orders::send_receipt",
        svc.send_receipt,
        description="Queue consumer: send a receipt",
        # informational (the engine does not act on it): `iii-typed demo` lists queue consumers by it
        metadata={"queue": RECEIPT_QUEUE, "enqueued_by": "orders::create"},
    )
    iii.register_function("orders::on_change", svc.on_change, description="React to order changes")
    iii.register_function("api::get_order", svc.http_get, description="HTTP: GET /orders/:id")
    iii.register_trigger({"type": "state", "function_id": "orders::on_change", "config": {"scope": ORDERS}})
    iii.register_trigger(
        {
            "type": "http",
            "function_id": "api::get_order",
            "config": {"api_path": "/orders/:id", "http_method": "GET"},
        }
    )


def main() -> None:
    """Connect, register everything and serve until SIGINT/SIGTERM."""
    iii = register_worker(options=InitOptions(worker_name="orders-worker"))
    register(iii)
    print("orders worker ready", flush=True)
    iii.run_forever()


if __name__ == "__main__":
    main()
