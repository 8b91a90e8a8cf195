"""Typed event data: annotate ``data`` with a dataclass and pyfunc builds it for you.

The JSON data is checked against the annotation before the function runs: a missing field
or a wrong type is answered with a 400 naming the field, and the function never sees it.
Returning a dataclass as the reply data sends its JSON form. (Pydantic models work the same
way: list ``pydantic`` in requirements.txt and annotate with the model.)
"""

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Line:
    sku: str
    quantity: int
    unit_price: float


@dataclass
class Order:
    order_id: str
    lines: list[Line]
    coupon: Optional[str] = None


@dataclass
class Invoice:
    order_id: str
    total: float
    discounts: list[str] = field(default_factory=list)


def handler(data: Order):
    total = sum(line.quantity * line.unit_price for line in data.lines)
    discounts = []
    if data.coupon == "TENOFF":
        total *= 0.9
        discounts.append("TENOFF: 10%")
    invoice = Invoice(order_id=data.order_id, total=round(total, 2), discounts=discounts)
    return {"type": "com.example.invoice", "subject": data.order_id}, invoice
