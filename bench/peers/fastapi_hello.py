"""FastAPI apps as services write them: the framework workload for ASGI servers.

* ``GET /`` -> ``{"message": "Hello, World!"}``: FastAPI's tutorial hello
  world (a dict, encoded by FastAPI's ``JSONResponse``).
* ``POST /items`` with a small JSON body -> the body validated into a
  pydantic model (a default filled in) and sent back as JSON.

Nothing beyond FastAPI's defaults.  As with ``starlette_hello``, the
framework's own work is most of each request: the benchmark shows what a
server saves a typical FastAPI service.

    uvicorn --loop uvloop --http httptools --no-access-log --log-level warning \\
        bench.peers.fastapi_hello:app           # from the repository root
"""
from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    """A small JSON document, validated on the way in and on the way out."""

    name: str
    price: float
    tags: list[str] = []
    in_stock: bool = True


@app.get("/")
async def hello() -> dict[str, str]:
    """The tutorial's first endpoint."""
    return {"message": "Hello, World!"}


@app.post("/items")
async def create_item(item: Item) -> Item:
    """Validate the body and send it back."""
    return item
