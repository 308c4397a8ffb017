"""Apps for the worker-process tests, run with ``fastsrv run tests.apps.workers:NAME --workers N``.

Each logs ``EVENT <what> pid=<pid>`` on the ``workers.test`` logger, so a
test can tell the workers apart in the supervisor's combined output.
"""

import asyncio
import logging
import os
import signal

from fastsrv import App

log = logging.getLogger("workers.test")


def _event(what: str) -> None:
    log.info("EVENT %s pid=%d", what, os.getpid())


def _base() -> App:
    app = App()

    @app.get("/pid")
    def pid(request):
        return str(os.getpid())

    @app.get("/slow")
    async def slow(request):
        ms = int(request.query.get("ms", "1000"))
        await asyncio.sleep(ms / 1000)
        return f"slow {ms} from {os.getpid()}"

    return app


app = _base()


@app.on_startup
async def started():
    _event("startup")


@app.on_shutdown
async def stopped():
    _event("shutdown")


# every worker exits on its own 0.3 s after it starts serving
crashing = _base()


@crashing.on_startup
def exit_soon():
    asyncio.get_running_loop().call_later(0.3, os._exit, 70)


# the startup hook fails: the worker exits 1 before serving
bad_startup = _base()


@bad_startup.on_startup
def refuse():
    raise RuntimeError("the database is not there")


# the worker ignores SIGTERM (a stuck process), so only SIGKILL ends it
stubborn = _base()


@stubborn.on_startup
def ignore_sigterm():
    asyncio.get_running_loop().call_soon(signal.signal, signal.SIGTERM, signal.SIG_IGN)


async def lifespan_app(scope, receive, send):
    """A raw ASGI app with a lifespan, answering its pid."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _event("lifespan-startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                _event("lifespan-shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# starts a long-lived program that inherits every inheritable fd, as
# os.system or a C library's popen would
spawner = _base()


@spawner.on_startup
def start_helper_program():
    import subprocess
    proc = subprocess.Popen(["sleep", "20"], close_fds=False)
    log.info("EVENT helper pid=%d", proc.pid)
