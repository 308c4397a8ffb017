"""picows' own echo server, the floor of the WebSocket benchmark: one
Cython class owning the transport, each frame echoed from its receive
buffer in the frame callback, no app layer.

    python bench/peers/ws_picows_echo.py --port 9000
"""
from __future__ import annotations

import argparse
import asyncio

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())
        elif frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())


async def main(host: str, port: int) -> None:
    def listener_factory(request: WSUpgradeRequest) -> Echo:
        return Echo()

    server = await ws_create_server(listener_factory, host, port)
    print(f"picows echo serving on {host}:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
