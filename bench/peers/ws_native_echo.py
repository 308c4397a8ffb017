"""The same WebSocket echo as a native fastsrv app."""
from __future__ import annotations

from fastsrv import App

app = App()


@app.websocket("/")
async def echo(ws):
    await ws.accept()
    async for message in ws:
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_text(message)


@app.get("/")
def hello(request):
    return "Hello, World!"
