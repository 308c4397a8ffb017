"""The locust scenario ``fastsrv bench --tool locust`` runs by default.

Each user sends ``GET $FASTSRV_BENCH_PATH`` (``/`` if unset) back to back, with
no wait between requests, like a wrk connection; any answer other than 2xx
or 3xx counts as a failure.  By hand::

    FASTSRV_BENCH_PATH=/ locust -f fastsrv/bench_locust.py --headless -u 50 -r 50 -t 10s \\
        --host http://127.0.0.1:8000
"""
import os

from locust import FastHttpUser, constant, task

PATH = os.environ.get("FASTSRV_BENCH_PATH", "/")


class BenchUser(FastHttpUser):
    """One client on one keep-alive connection, always with a request in flight."""

    wait_time = constant(0)

    @task
    def get_path(self) -> None:
        with self.client.get(PATH, catch_response=True) as response:
            if not 200 <= response.status_code < 400:
                response.failure(f"status {response.status_code}")
