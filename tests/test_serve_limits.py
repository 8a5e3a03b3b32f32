"""productgan serve under load and abuse, on a live uvicorn server: image requests queue within a
bound and are refused beyond it with 503 and Retry-After, /health answers at once meanwhile, and a
client that sends its request slowly, or never finishes it, is disconnected; and `productgan serve`
in a process of its own: Ctrl-C while it builds its index, and the start-up line once it listens."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from time import perf_counter, sleep

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from helpers import train_tiny_run  # noqa: E402
from test_serve import export  # noqa: E402

from productgan.serve import create_app  # noqa: E402
from productgan.serve.app import server_settings  # noqa: E402
from productgan.serve.work import Busy, WorkQueue  # noqa: E402

# Generous bounds for two busy cores, each far below what the unbounded server took: /health
# waited 11.7-23.1 s behind a burst, and half-sent requests were held for as long as the client liked.
HEALTH_BOUND_S = 1.0
TIMEOUT_S = 0.5
CLOSE_BOUND_S = 3.0


@pytest.fixture(scope="module")
def conditional_export(tmp_path_factory):
    return export(tmp_path_factory.mktemp("limits") / "generator", conditional=True)


@contextmanager
def live_server(app, request_timeout: float = 10.0, root_path: str = ""):
    """uvicorn serving ``app`` with ``productgan serve``'s settings, in a thread; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, **server_settings("127.0.0.1", port, request_timeout, root_path)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    start = perf_counter()
    while not server.started:
        assert thread.is_alive() and perf_counter() - start < 30, "the server did not start"
        sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_health_answers_at_once_while_a_burst_of_large_requests_is_bounded(conditional_export):
    app = create_app(conditional_export, max_images=1024, workers=1, queue=3)
    with live_server(app) as port, ThreadPoolExecutor(50) as pool:
        burst = [pool.submit(get, port, f"/images.png?n=1024&seed={seed}") for seed in range(50)]
        sleep(0.3)  # the burst has arrived and the worker is busy
        latencies = []
        for _ in range(5):
            start = perf_counter()
            status, _, body = get(port, "/health")
            latencies.append(perf_counter() - start)
            assert status == 200 and json.loads(body) == {"status": "ok"}
        answers = [future.result(timeout=120) for future in burst]
        assert get(port, "/images.png?n=2")[0] == 200  # the server is well afterwards
    statuses = Counter(status for status, _, _ in answers)
    print(
        f"/health during a burst of 50 requests for 1024 images (1 worker, 3 waiting): median "
        f"{statistics.median(latencies) * 1000:.1f} ms, at most {max(latencies) * 1000:.1f} ms; "
        f"answers {dict(statuses)}"
    )
    assert max(latencies) < HEALTH_BOUND_S
    assert statuses[200] >= 4 and statuses[503] >= 20 and statuses[200] + statuses[503] == 50
    for status, headers, body in answers:
        if status == 503:
            assert headers["content-type"] == "application/json"
            assert 1 <= int(headers["retry-after"]) <= 60
            assert json.loads(body)["detail"].startswith("The server is busy")


def closed_after(connection: socket.socket, limit: float) -> tuple[bytes, float]:
    """What the server sent before closing ``connection``, and when it closed (seconds from now);
    fails when it is still open after ``limit`` seconds."""
    start, received = perf_counter(), b""
    connection.settimeout(limit)
    try:
        while chunk := connection.recv(4096):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server still held the connection after {limit} s, having sent {received[:60]!r}")
    except ConnectionResetError:
        pass
    return received, perf_counter() - start


def test_a_half_sent_request_is_closed_within_the_timeout(conditional_export):
    app = create_app(conditional_export)
    with live_server(app, request_timeout=TIMEOUT_S) as port:
        parts = {
            "nothing": b"",
            "half a request line": b"GET /hea",
            "headers without their end": b"GET /health HTTP/1.1\r\nHost: x\r\n",
        }
        connections = {name: socket.create_connection(("127.0.0.1", port)) for name in parts}
        for name, part in parts.items():
            connections[name].sendall(part)
        for name, connection in connections.items():
            with connection:
                received, waited = closed_after(connection, CLOSE_BOUND_S)
                print(f"{name}: closed after {waited:.2f} s")
                assert received.startswith(b"HTTP/1.1 408") == bool(parts[name]), name

        # a byte at a time: the clock runs from the first byte, not the last
        with socket.create_connection(("127.0.0.1", port)) as trickle:
            start = perf_counter()
            try:
                for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100:
                    trickle.sendall(bytes([byte]))
                    sleep(0.05)
                    assert perf_counter() - start < CLOSE_BOUND_S, "a trickling client was held"
            except (BrokenPipeError, ConnectionResetError):
                pass
            closed_after(trickle, CLOSE_BOUND_S)

        # a body that never arrives whole: answered (the route reads no body), then closed
        with socket.create_connection(("127.0.0.1", port)) as body:
            body.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            received, _ = closed_after(body, CLOSE_BOUND_S)
            assert received.startswith(b"HTTP/1.1 200")

        # a whole request is answered, and its kept-alive connection outlives the request timeout
        with socket.create_connection(("127.0.0.1", port), timeout=CLOSE_BOUND_S) as kept:
            for _ in range(2):
                kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while not answer.endswith(b'{"status":"ok"}'):
                    answer += kept.recv(4096) or pytest.fail(f"closed after {answer!r}")
                assert answer.startswith(b"HTTP/1.1 200")
                sleep(TIMEOUT_S * 1.5)


def test_the_work_queue_runs_a_few_jobs_and_refuses_more():
    queue = WorkQueue(workers=2, queue=1)
    release, running, most = threading.Event(), [0], [0]
    lock = threading.Lock()

    def job():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
        return "made"

    admitted = [queue.submit(job) for _ in range(3)]
    with pytest.raises(Busy, match=r"busy \(2 image requests being made, 1 waiting\); try again in \d+ s") as busy:
        queue.submit(job)
    assert 1 <= busy.value.retry_after <= 60
    release.set()
    assert [future.result(timeout=10) for future in admitted] == ["made"] * 3
    assert most[0] == 2 and queue.load == (0, 0)
    assert queue.submit(job).result(timeout=10) == "made"  # room again
    queue.close()  # as at a server's shutdown; a server started again with the same app works
    assert queue.submit(job).result(timeout=10) == "made"


def test_a_job_given_up_before_it_starts_is_not_run():
    queue = WorkQueue(workers=1, queue=2)
    started, release, ran = threading.Event(), threading.Event(), []
    first = queue.submit(lambda: started.set() or release.wait(10))
    assert started.wait(10)
    waiting = queue.submit(lambda: ran.append("second"))
    assert waiting.cancel()  # its client went away
    assert queue.load == (1, 0)  # and its place in line is free again
    release.set()
    first.result(timeout=10)
    queue.submit(lambda: ran.append("third")).result(timeout=10)
    assert ran == ["third"]


def test_behind_a_proxy_that_strips_the_root_path(conditional_export):
    """The proxy passes /gan/docs on as /docs; the pages name every address under /gan."""
    with live_server(create_app(conditional_export), root_path="/gan") as port:
        status, _, docs = get(port, "/docs")
        assert status == 200 and b'src="/gan/static/swagger-ui-bundle.js"' in docs
        assert b'data-openapi-url="/gan/openapi.json"' in docs
        status, _, page = get(port, "/?n=2")
        assert status == 200 and b'href="/gan/images.zip?n=2&amp;seed=0"' in page
        assert b'src="/gan/named.png?name=0%3A0%3AT-shirt%2Ftop"' in page and b'data-root="/gan"' in page
        assert (
            get(port, "/images.png?n=2")[0] == 200
            and get(port, "/named.png?name=0%3A0%3AT-shirt%2Ftop")[0] == 200
            and get(port, "/static/swagger-ui-bundle.js")[0] == 200
        )
        assert json.loads(get(port, "/openapi.json")[2])["servers"] == [{"url": "/gan"}]


# ``productgan serve`` in a process of its own, with a change made first (``python -c``); argv: the command.
SERVE_WITH = """
import sys
{change}
from productgan.cli import main
sys.exit(main(sys.argv[1:]))
"""
# An index build that takes 0.05 s an image, spent in torch's native code as a real build's is, in
# batches of 4 (BUILD_BATCH, the build's own test seam): some 10 s for the tiny run's 200 images.
SLOW_BUILD = """
import time
import torch
import productgan.explore.neighbours as neighbours
original = neighbours.extract_features
def slow(net, images, *args):
    square = torch.ones(200, 200)
    for _ in range(len(images)):
        until = time.perf_counter() + 0.05
        while time.perf_counter() < until:
            torch.mm(square, square)
    return original(net, images, *args)
neighbours.extract_features = slow
neighbours.BUILD_BATCH = 4
"""
# uvicorn half a second slower to listen (its configuration loads late).
SLOW_LISTEN = """
import time
import uvicorn
load = uvicorn.Config.load
def slow_load(self):
    time.sleep(0.5)
    return load(self)
uvicorn.Config.load = slow_load
"""


@contextmanager
def serve_process(change: str, source, env: dict[str, str] | None = None):
    """``productgan serve source --port 0`` after ``change``, started; yields (process, the port of
    its start-up line) once it has printed that line, and kills it if the test leaves it running."""
    script = SERVE_WITH.format(change=change)
    process = subprocess.Popen(
        [sys.executable, "-c", script, "serve", str(source), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert select.select([process.stdout], [], [], 120)[0], "serve printed nothing"
        line = process.stdout.readline()
        found = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
        assert found, (line, process.stderr.read() if process.poll() is not None else "")
        yield process, int(found.group(1))
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("limits-run"))


def test_ctrl_c_while_the_index_is_built_stops_cleanly(tiny_run, tmp_path):
    """A Ctrl-C during the start-up's index build used to abort the process ("terminate called
    without an active exception", 134): the build thread was still in torch when Python exited."""
    cache = tmp_path / "cache"  # a cache of its own: the features are computed, slowly
    with serve_process(SLOW_BUILD, tiny_run, {"PRODUCTGAN_CACHE": str(cache)}) as (process, port):
        sleep(1.5)  # the build is under way (its features take some 10 s)
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        start = perf_counter()
        _, err = process.communicate(timeout=60)
    assert "terminate called" not in err and "Traceback" not in err, err
    assert process.returncode == 0, err
    assert perf_counter() - start < 10  # stopped at a batch's end, not at the build's
    assert not list(cache.rglob("*.npy"))  # it was stopped before the training features were made


def test_the_start_up_line_is_printed_once_the_server_listens(conditional_export):
    with serve_process(SLOW_LISTEN, conditional_export) as (process, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # refused if the line came first
            pass
        assert get(port, "/health")[0] == 200
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
