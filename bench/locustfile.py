"""A realistic user mix on the demo app (``fastsrv.demo:app``), for locust.

Each user, with a short think time between requests:

* ``GET /`` most of the time — the body must be ``Hello, World!``;
* ``POST /echo`` with a JSON body — the echo must carry the same method and
  body back;
* ``GET /sleep?ms=N`` with a small random N — the answer must name N;
* ``GET /stream?chunks=N&ms=M`` — the whole stream is read and must hold
  chunks ``0`` to ``N-1`` in order.

Any other status or content is a failure.  Against a running server,
bounded in users and time::

    fastsrv run fastsrv.demo:app --port 8000 &
    locust -f bench/locustfile.py --headless -u 50 -r 10 -t 30s --host http://127.0.0.1:8000

or let ``fastsrv bench`` start the server, run it and stop it, reporting the
server's CPU per request too::

    fastsrv bench --tool locust --locustfile bench/locustfile.py --users 50 --spawn-rate 10 --duration 30
"""
import json
import random
import string

from locust import FastHttpUser, between, task


class DemoUser(FastHttpUser):
    """A client of the demo app: mostly page views, some API calls, a few slow ones."""

    wait_time = between(0.05, 0.5)

    @task(10)
    def hello(self) -> None:
        with self.client.get("/", catch_response=True) as response:
            if response.status_code != 200 or response.text != "Hello, World!":
                response.failure(f"GET / answered {response.status_code} {response.text[:80]!r}")

    @task(4)
    def echo(self) -> None:
        sent = {
            "order": random.randrange(1_000_000),
            "items": [{"sku": "".join(random.choices(string.ascii_uppercase, k=6)), "qty": random.randint(1, 9)}
                      for _ in range(random.randint(1, 5))],
            "note": random.choice(["", "gift", "deliver after 6 pm", "zürich ✓"]),
        }
        with self.client.post("/echo", json=sent, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"POST /echo answered {response.status_code}")
                return
            echoed = response.json()
            if echoed.get("method") != "POST" or json.loads(echoed.get("body") or "null") != sent:
                response.failure(f"POST /echo did not echo the body: {response.text[:200]!r}")

    @task(2)
    def sleep(self) -> None:
        ms = random.randint(1, 50)
        with self.client.get(f"/sleep?ms={ms}", name="/sleep?ms=[1-50]", catch_response=True) as response:
            if response.status_code != 200 or response.text != f"slept {ms} ms\n":
                response.failure(f"GET /sleep?ms={ms} answered {response.status_code} {response.text[:80]!r}")

    @task(1)
    def stream(self) -> None:
        chunks, ms = random.randint(2, 8), random.randint(1, 20)
        with self.client.get(f"/stream?chunks={chunks}&ms={ms}", name="/stream?chunks=[2-8]&ms=[1-20]",
                             catch_response=True) as response:     # FastHttpUser reads the whole body
            expected = "".join(f"chunk {i}\n" for i in range(chunks))
            if response.status_code != 200 or response.text != expected:
                response.failure(f"GET /stream answered {response.status_code} {response.text[:80]!r}")
