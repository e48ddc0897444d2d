"""The HTTP server: answers, limits, bad and vanishing clients, concurrency, shutdown, and `gendistill bench`.

Everything runs on 127.0.0.1 with bounded loops and short timeouts.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from gendistill.runtime.cli import main
from gendistill.runtime import Classifier
from gendistill.runtime.server import PredictionServer, ServerLimits

LIMITS = ServerLimits(max_body_bytes=8192, max_texts=8, max_text_chars=1000, socket_timeout_s=5.0)


@pytest.fixture(scope="module")
def classifier(bundle) -> Classifier:
    return Classifier.load(bundle)


def start_server(classifier: Classifier, limits: ServerLimits) -> PredictionServer:
    server = PredictionServer(("127.0.0.1", 0), classifier, limits)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(classifier):
    server = start_server(classifier, LIMITS)
    yield server
    server.shutdown()
    server.server_close()


def connect(server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(*server.server_address[:2], timeout=10)


def request(connection, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def post(connection, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(connection, "POST", "/predict", body, {"Content-Type": "application/json"})


def raw_exchange(server, data: bytes) -> bytes:
    """Send raw bytes, then read whatever comes back until the server closes or goes quiet."""
    with socket.create_connection(server.server_address[:2], timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def assert_healthy(server, classifier):
    connection = connect(server)
    status, answer = post(connection, {"texts": ["goal for the team"]})
    connection.close()
    assert status == 200 and answer["labels"] == [classifier.predict("goal for the team")]


# --- answers ---------------------------------------------------------------------------------------


def test_health_and_metadata(server, bundle, classifier):
    connection = connect(server)
    assert request(connection, "GET", "/health") == (200, {"status": "ok"})
    status, metadata = request(connection, "GET", "/metadata")
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert status == 200
    assert metadata["labels"] == classifier.labels
    assert metadata["versions"] == manifest["versions"] and metadata["metrics"] == manifest["metrics"]
    assert metadata["limits"]["max_texts"] == LIMITS.max_texts


def test_predict_matches_the_library_over_one_connection(server, classifier):
    connection = connect(server)
    texts = ["The striker scored", "Bank shares fell", "A new phone", "", "café 😀"]
    for _ in range(3):  # keep-alive: one connection, several requests
        status, answer = post(connection, {"texts": texts})
        assert status == 200
        assert answer["labels"] == classifier.predict(texts)
        assert answer["label_names"] == classifier.labels
        np.testing.assert_allclose(answer["probabilities"], classifier.predict_proba(texts), atol=1e-6)
    status, answer = post(connection, {"texts": ["only one"]})
    assert status == 200 and len(answer["probabilities"]) == 1


# --- bad requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "not valid UTF-8 JSON"),
        (b"\xff\xfe garbage", 400, "not valid UTF-8 JSON"),
        (b"[" * 3000 + b"]" * 3000, 400, "not valid UTF-8 JSON"),  # deep nesting: RecursionError inside json
        (b'["a list"]', 400, "must be a JSON object"),
        (b'{"text": "singular"}', 400, "must be a JSON object"),
        (b'{"texts": "a string"}', 400, "must be a JSON object"),
        (b'{"texts": []}', 400, "empty"),
        (b'{"texts": ["ok", 3]}', 400, '"texts"[1] is a number'),
        (b'{"texts": [null]}', 400, '"texts"[0] is null'),
        (b'{"texts": [["nested"]]}', 400, '"texts"[0] is an array'),
        (json.dumps({"texts": ["x"] * 9}).encode(), 413, "limit is 8"),
        (json.dumps({"texts": ["x" * 1001]}).encode(), 413, "limit is 1000"),
    ],
)
def test_bad_bodies_get_4xx_and_the_connection_stays_usable(server, classifier, body, status, message):
    connection = connect(server)
    answer_status, answer = post(connection, body)
    assert answer_status == status and message in answer["error"]
    status_after, answer_after = post(connection, {"texts": ["goal"]})
    assert status_after == 200 and answer_after["labels"] == [classifier.predict("goal")]


def test_oversized_body_is_refused_with_json(server, classifier):
    body = json.dumps({"texts": ["x" * 20_000]}).encode()  # 20 kB > 8 kB limit: read, dropped, answered
    assert post(connect(server), body)[0] == 413
    # A huge announced body is not read at all: the answer comes straight after the headers.
    answer = raw_exchange(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b'"error"' in answer
    assert_healthy(server, classifier)


@pytest.mark.parametrize(
    "head, status",
    [
        (b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n", b"411"),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n", b"400"),
        (b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", b"404"),
        (b"GET /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"405"),
        (b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"404"),
        (b"BREW /predict HTTP/1.1\r\nHost: x\r\n\r\n", b"501"),
        (b"complete nonsense\r\n\r\n", b"400"),
    ],
)
def test_malformed_requests(server, classifier, head, status):
    answer = raw_exchange(server, head)
    assert answer.split(b" ")[1] == status, answer
    assert_healthy(server, classifier)


def test_clients_that_vanish_mid_request(server, classifier):
    address = server.server_address[:2]
    for partial in (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"texts\": [\"half",  # body cut short
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le",  # headers cut short
        b"POST /pre",
    ):
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(partial)
    # One that resets the connection instead of closing it politely.
    sock = socket.create_connection(address, timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
    sock.close()
    # One that sends a whole request and leaves before reading the answer.
    with socket.create_connection(address, timeout=5) as sock:
        body = json.dumps({"texts": ["goal"] * 8}).encode()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert_healthy(server, classifier)


def test_a_stalled_client_does_not_block_others(server, classifier):
    with socket.create_connection(server.server_address[:2], timeout=5) as stalled:
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        started = time.perf_counter()
        assert_healthy(server, classifier)
        assert time.perf_counter() - started < LIMITS.socket_timeout_s


def test_concurrent_clients_good_and_bad(server, classifier):
    texts = ["The striker scored", "Bank shares fell", "A new phone", "café 😀 2024"]
    expected = classifier.predict_proba(texts)
    bad_bodies = [b"{oops", b'{"texts": [1]}', json.dumps({"texts": ["x"] * 9}).encode()]
    failures: list[str] = []

    def good_client(number: int):
        connection = connect(server)
        for i in range(25):
            status, answer = post(connection, {"texts": texts})
            if status != 200 or not np.allclose(answer["probabilities"], expected, atol=1e-6):
                failures.append(f"good client {number}, request {i}: {status}")

    def bad_client(number: int):
        connection = connect(server)
        for i in range(25):
            status, _ = post(connection, bad_bodies[i % len(bad_bodies)])
            if status not in (400, 413):
                failures.append(f"bad client {number}, request {i}: {status}")
        for _ in range(5):  # and some that vanish
            with socket.create_connection(server.server_address[:2], timeout=5) as sock:
                sock.sendall(b"POST /predict HTTP/1.1\r\nContent-Length: 99\r\n\r\n{")

    workers = [threading.Thread(target=good_client, args=(n,)) for n in range(4)]
    workers += [threading.Thread(target=bad_client, args=(n,)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    assert failures == []
    assert_healthy(server, classifier)


def test_too_many_connections_get_503(classifier):
    server = start_server(classifier, ServerLimits(max_connections=2, socket_timeout_s=5.0))
    idle = [socket.create_connection(server.server_address[:2], timeout=5) for _ in range(2)]
    try:
        deadline = time.monotonic() + 5
        answer = b""
        while time.monotonic() < deadline and not answer.startswith(b"HTTP/1.1 503"):
            answer = raw_exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 503") and b'"error"' in answer
    finally:
        for sock in idle:
            sock.close()
    # Once the idle connections are gone, requests are served again.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not answer.startswith(b"HTTP/1.1 200"):
        answer = raw_exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 200")
    server.shutdown()
    server.server_close()


def test_shutdown_lets_a_request_in_flight_finish(classifier):
    server = start_server(classifier, LIMITS)
    body = json.dumps({"texts": ["goal"]}).encode()
    with socket.create_connection(server.server_address[:2], timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body[:5]))
        deadline = time.monotonic() + 5
        while server._in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.shutdown()  # stops accepting; the request above is still being read
        assert not server.wait_until_idle(0.2)
        sock.sendall(body[5:])
        answer = b""
        while b'"labels"' not in answer and (chunk := sock.recv(65536)):  # headers and body may come apart
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b'"labels"' in answer
    assert server.wait_until_idle(5)
    server.server_close()


# --- the real command ------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_command_stops_gracefully(bundle, classifier, stop_signal):
    process = subprocess.Popen(
        [sys.executable, "-m", "gendistill.runtime.cli", "serve", str(bundle), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line + process.stderr.read()
        connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=10)
        status, answer = post(connection, {"texts": ["goal"]})
        assert status == 200 and answer["labels"] == [classifier.predict("goal")]
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Server stopped." in out
    assert "Traceback" not in err


def test_serve_refuses_a_busy_port(bundle, server):
    result = CliRunner().invoke(main, ["serve", str(bundle), "--port", str(server.server_address[1])])
    assert result.exit_code == 2 and "Cannot listen" in result.output


def test_bench_command(bundle):
    result = CliRunner().invoke(main, ["bench", str(bundle), "--duration", "0.2", "--server-clients", "2"])
    assert result.exit_code == 0, result.output
    for expected in ("batch-1 predict, median", "every word new", "throughput, batch 256", "req/s", "server RSS after load"):
        assert expected in result.output
    assert re.search(r"server failed requests\s+0", result.output)
    assert re.search(r"stopped cleanly on SIGTERM\s+yes", result.output)
