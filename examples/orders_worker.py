"""Example worker: an orders service whose handlers take and return pydantic models.

Run it against an engine (``iii-typed engine`` in another terminal)::

    python examples/orders_worker.py            # III_URL defaults to ws://127.0.0.1:49134

Every handler's request and response schema is derived from its type hints and registered with
the engine, so ``iii-typed codegen`` can generate a typed client for it
(``examples/orders_client.py``).
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from iii_typed import InitOptions, register_worker


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


class OrderStore:
    """In-memory order storage shared by the handlers (handlers may run on several threads)."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    def create(self, data: CreateOrderInput) -> Order:
        with self._lock:
            order = Order(
                id=f"ord_{next(self._ids):04d}",
                customer=data.customer,
                items=data.items,
                total_cents=sum(i.quantity * i.unit_price_cents for i in data.items),
                status="open",
                created_at=datetime.now(UTC),
            )
            self._orders[order.id] = order
            return order

    def get(self, order_id: str) -> Order:
        with self._lock:
            try:
                return self._orders[order_id]
            except KeyError:
                raise LookupError(f"order {order_id!r} does not exist") from None

    def cancel(self, order_id: str) -> Order:
        with self._lock:
            order = self.get(order_id)
            cancelled = order.model_copy(update={"status": "cancelled"})
            self._orders[order_id] = cancelled
            return cancelled

    def list(self, query: ListOrdersInput) -> OrderList:
        with self._lock:
            found = [
                o
                for o in self._orders.values()
                if (query.customer is None or o.customer == query.customer)
                and (query.status is None or o.status == query.status)
            ]
        return OrderList(orders=found, count=len(found))


store = OrderStore()


def create(data: CreateOrderInput) -> Order:
    """Create an order; the total is computed from the line items."""
    return store.create(data)


def get(data: GetOrderInput) -> Order:
    """Fetch one order by id (an unknown id is an error)."""
    return store.get(data.id)


async def list_orders(data: ListOrdersInput) -> OrderList:
    """List orders, optionally filtered by customer and status."""
    return store.list(data)


def cancel(data: GetOrderInput) -> Order:
    """Cancel an order."""
    return store.cancel(data.id)


def main() -> None:
    """Connect, register the four functions and serve until SIGINT/SIGTERM."""
    iii = register_worker(options=InitOptions(worker_name="orders-worker"))
    iii.register_function("orders::create", create, description="Create an order")
    iii.register_function("orders::get", get, description="Fetch one order by id")
    iii.register_function("orders::list", list_orders, description="List orders")
    iii.register_function("orders::cancel", cancel, description="Cancel an order")
    print("orders worker ready", flush=True)
    iii.run_forever()


if __name__ == "__main__":
    main()
