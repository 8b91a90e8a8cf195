"""A FastAPI service: path and query parameters, a validated JSON body (422), its own 404s."""

import contextlib

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

started = []


@contextlib.asynccontextmanager
async def lifespan(app):
    started.append(True)
    yield


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str = ""):
    if item_id == 404:
        raise HTTPException(status_code=404, detail="no such item")
    return {"item_id": item_id, "q": q, "started": bool(started)}


@app.post("/items")
async def create_item(item: Item):
    return {"created": item.name, "price": item.price}
