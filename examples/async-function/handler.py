"""An ``async def`` CloudEvent function: it awaits several lookups at once.

pyfunc runs every ``async def`` invocation on one shared event loop, so a slow ``await`` in
one request never blocks another, and ``asyncio.gather`` inside a request runs its work
concurrently. Here each item of the order is "priced" by a (simulated) remote call.
"""

import asyncio

PRICES = {"apple": 0.5, "bread": 2.25, "cheese": 4.0}


async def price_of(item: str) -> float:
    await asyncio.sleep(0.01)  # stands in for an HTTP call or a database query
    if item not in PRICES:
        raise KeyError(item)
    return PRICES[item]


async def handler(data: dict, attributes: dict):
    items = data.get("items", [])
    try:
        prices = await asyncio.gather(*(price_of(item) for item in items))
    except KeyError as exc:
        return {"type": "com.example.order.rejected"}, {"unknown_item": exc.args[0]}
    return {"type": "com.example.order.priced", "subject": attributes.get("subject")}, {
        "items": dict(zip(items, prices)),
        "total": round(sum(prices), 2),
    }
