"""The server against abusive and unusual clients: slow tricklers, oversized headers, pipelining, half-closed
sockets, many connections from one address, and requests that never finish.

The `check_*` functions take only the server's address and the limits it runs with, so
benchmarks/server/compare.py runs the very same checks against other servers. Everything is on
127.0.0.x loopback addresses (Linux routes all of 127/8 to the loopback device), every socket has a
timeout and every loop a deadline.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time

import pytest

from gendistill.runtime.server import PredictionServer, ServerLimits

TIMEOUT_S = 5.0
"""On every socket, so that no check can hang."""
ATTACKER = "127.0.0.1"
OTHER_CLIENT = "127.0.0.2"
WELL_FORMED_WITHIN_S = 1.0
"""The issue's bar: while the server is under attack, a well-formed client is answered within this long."""


# --- a raw client ----------------------------------------------------------------------------------


def open_from(address: tuple[str, int], source: str = ATTACKER) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    sock.bind((source, 0))
    sock.connect(address)
    return sock


def predict_request(texts: list[str], close: bool = False, body: bytes | None = None) -> bytes:
    body = json.dumps({"texts": texts}).encode() if body is None else body
    connection = b"Connection: close\r\n" if close else b""
    return (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
            % (connection, len(body), body))


def read_response(stream) -> tuple[int, dict[str, str], bytes]:
    """One response from a buffered socket file: status, headers (lower-case names) and body."""
    status_line = stream.readline(65537)
    if not status_line:
        raise ConnectionError("the server closed the connection without answering")
    status = int(status_line.split()[1])
    headers = {}
    while (line := stream.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", 0)))
    return status, headers, body


def exchange(address, data: bytes, source: str = ATTACKER) -> tuple[int, dict[str, str], bytes]:
    with open_from(address, source) as sock, sock.makefile("rb") as stream:
        sock.sendall(data)
        return read_response(stream)


def hold(address, held: list, source: str = ATTACKER) -> None:
    """Open a connection from `source`, have it answered (so the server counts it as open) and add it to `held`."""
    sock = open_from(address, source)
    held.append((sock, sock.makefile("rb")))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(held[-1][1])[0] == 200


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed (EOF or reset) and sent nothing more."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def well_formed_predict(address, text: str, source: str = OTHER_CLIENT) -> tuple[int, dict, float]:
    """A fresh connection and one ordinary request, as a well-behaved client would make it: status, answer,
    seconds. A connection that fails is status 0, its error the answer."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(*address, timeout=TIMEOUT_S, source_address=(source, 0))
    try:
        connection.request("POST", "/predict", json.dumps({"texts": [text]}), {"Content-Type": "application/json"})
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
    except (OSError, http.client.HTTPException) as error:
        status, answer = 0, {"error": repr(error)}
    finally:
        connection.close()
    return status, answer, time.perf_counter() - started


class Tricklers:
    """`count` connections from `source` that send a request's headers (or body) one byte every
    `interval_s`, and reconnect whenever the server answers or drops them: a slowloris attack that
    persists for as long as it runs. Sockets are non-blocking, so a slow connect delays no other
    trickle, and at most `connects_per_tick` are opened at a time, so that even a server with a short
    accept queue takes them in rather than resetting them."""

    def __init__(self, address, count: int, source: str = ATTACKER, interval_s: float = 0.2, body: bool = False,
                 connects_per_tick: int = 4):
        self.address, self.count, self.source, self.interval_s = address, count, source, interval_s
        self.connects_per_tick = connects_per_tick
        # Trickling the body instead: the headers announce more than is ever sent.
        self.opening = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n{" if body else b"POST /predict HTTP/1.1\r\nHost: x\r\n"
        self.trickle = b" " if body else b"X"
        self.sockets: list[socket.socket | None] = [None] * count
        self.unsent = [b""] * count
        self.started = [False] * count
        """Whether each has got through the handshake at least once (then the server accepted or refused it)."""
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        deadline = time.monotonic() + 10
        while not all(self.started) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # for the server to take in the last ones
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=TIMEOUT_S)
        for sock in self.sockets:
            if sock is not None:
                sock.close()

    def _run(self) -> None:
        deadline = time.monotonic() + 60  # a backstop: the checks stop it long before
        while time.monotonic() < deadline:
            for index, sock in enumerate(self.sockets):
                if sock is not None:
                    self._tick(index, sock)
            closed = sorted((index for index, sock in enumerate(self.sockets) if sock is None), key=self.started.__getitem__)
            for index in closed[: self.connects_per_tick]:  # those never in yet first
                self._connect(index)
            if self._stop.wait(self.interval_s):
                return

    def _connect(self, index: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((self.source, 0))
        sock.connect_ex(self.address)
        self.sockets[index], self.unsent[index] = sock, self.opening

    def _tick(self, index: int, sock: socket.socket) -> None:
        try:
            try:
                sock.recv(1, socket.MSG_PEEK)
                raise ConnectionError  # the server answered (503, 408, ...) or closed: it is done with us
            except BlockingIOError:
                pass
            data = self.unsent[index] or self.trickle
            sent = sock.send(data)
            self.unsent[index] = data[sent:] if self.unsent[index] else b""
            self.started[index] = True
        except BlockingIOError:
            pass  # still connecting, or the server reads nothing: either way, nothing to do yet
        except OSError as error:
            self.started[index] |= not isinstance(error, ConnectionRefusedError)  # answered or reset: it got in
            sock.close()
            self.sockets[index] = None
            self.reconnects += 1


# --- the checks ------------------------------------------------------------------------------------


def check_tricklers_do_not_starve_others(address, tricklers: int, rounds: int = 5, spacing_s: float = 0.4) -> None:
    """`tricklers` slow connections from one address (more than the server's connection slots), re-opened
    whenever dropped; meanwhile a client from another address must be answered within a second, every time."""
    with Tricklers(address, tricklers):
        for round_ in range(rounds):
            status, answer, seconds = well_formed_predict(address, "goal for the team")
            assert status == 200, f"round {round_}: the well-formed client got {status}: {answer}"
            assert seconds < WELL_FORMED_WITHIN_S, f"round {round_}: the well-formed client waited {seconds:.2f} s"
            time.sleep(spacing_s)


def check_distributed_tricklers(address, addresses: int, per_address: int) -> None:
    """Tricklers from many addresses at once, each within a per-address cap; a well-formed client from yet
    another address must still be answered within a second."""
    sources = [f"127.0.0.{10 + n}" for n in range(addresses)]
    groups = [Tricklers(address, per_address, source) for source in sources]
    for group in groups:
        group.__enter__()
    try:
        for round_ in range(3):
            status, answer, seconds = well_formed_predict(address, "goal for the team", source="127.0.0.3")
            assert status == 200, f"round {round_}: the well-formed client got {status}: {answer}"
            assert seconds < WELL_FORMED_WITHIN_S, f"round {round_}: the well-formed client waited {seconds:.2f} s"
            time.sleep(0.3)
    finally:
        for group in groups:
            group.__exit__()


def check_request_deadline(address, deadline_s: float, body: bool = False, source: str = ATTACKER) -> None:
    """A client trickling one byte every 0.1 s (each read well inside any per-read timeout) is cut off once
    the whole request has taken `deadline_s`, with a 408 if anything."""
    with open_from(address, source) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n{" if body else b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        give_up = started + deadline_s + 2.0
        while time.monotonic() < give_up:
            try:
                sock.sendall(b" " if body else b"X")
            except OSError:
                break  # reset: the server closed on us
            if select.select([sock], [], [], 0.1)[0]:
                break
        ended_after = time.monotonic() - started
        assert ended_after < deadline_s + 1.0, f"a request trickled in for {ended_after:.1f} s and was never cut off"
        answer = b""
        try:
            while chunk := sock.recv(65536):  # to the end: the headers and body may come apart
                answer += chunk
        except OSError:
            pass
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    if answer:
        assert b'"error"' in answer, answer[:300]


def check_idle_connections_closed(address, idle_s: float) -> None:
    """A connection that never sends a byte, and one that goes quiet after a request, are both closed
    within about `idle_s`."""
    with open_from(address) as silent, open_from(address, OTHER_CLIENT) as quiet, quiet.makefile("rb") as stream:
        quiet.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(stream)[0] == 200
        started = time.monotonic()
        for sock, name in ((silent, "a connection that never sent anything"), (quiet, "an idle keep-alive connection")):
            sock.settimeout(max(0.1, started + idle_s + 1.5 - time.monotonic()))
            try:
                assert closed_by_server(sock), f"{name} got data"
            except TimeoutError:
                raise AssertionError(f"{name} was still open after {idle_s + 1.5:.1f} s") from None


def check_oversized_headers(address, max_header_bytes: int) -> None:
    """A header section over the cap, in lines each well under the standard library's 64 KiB line limit
    and fewer than its 100 headers, gets 431 with a JSON error; one comfortably under the cap is served."""
    filler = "".join(f"X-Filler-{n}: {'a' * 2000}\r\n" for n in range(2 * max_header_bytes // 2000 + 1)).encode()
    status, headers, body = exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n")
    assert status == 431, (status, body[:200])
    assert headers.get("content-type") == "application/json" and "error" in json.loads(body), body[:200]
    modest = "".join(f"X-Filler-{n}: {'a' * 200}\r\n" for n in range(max_header_bytes // 1000)).encode()
    status, _, body = exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + modest + b"\r\n")
    assert status == 200, (status, body[:200])


def check_pipelined(address) -> list[dict]:
    """Four requests written at once on one keep-alive connection (a bad one among them) are answered in
    order, and the connection closes after the one that asked for it. Returns the two predict answers."""
    requests = [
        predict_request(["The striker scored"]),
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        predict_request([], body=b"{not json"),
        predict_request(["Bank shares fell", "A new phone"], close=True),
    ]
    with open_from(address) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"".join(requests))
        answers = [read_response(stream) for _ in requests]
        assert [status for status, _, _ in answers] == [200, 200, 400, 200], [(s, b[:100]) for s, _, b in answers]
        assert json.loads(answers[1][2]) == {"status": "ok"}
        assert stream.read(1) == b"", "the connection stayed open after Connection: close"
    first, last = json.loads(answers[0][2]), json.loads(answers[3][2])
    assert len(first["labels"]) == 1 and len(last["labels"]) == 2
    return [first, last]


def check_half_closed(address) -> list[dict]:
    """Two whole requests, then the client shuts its write side: both are answered, then the server closes."""
    with open_from(address) as sock, sock.makefile("rb") as stream:
        sock.sendall(predict_request(["The striker scored"]) + predict_request(["Bank shares fell"]))
        sock.shutdown(socket.SHUT_WR)
        answers = [read_response(stream) for _ in range(2)]
        assert [status for status, _, _ in answers] == [200, 200], [(s, b[:100]) for s, _, b in answers]
        assert stream.read(1) == b""
    return [json.loads(body) for _, _, body in answers]


def check_per_client_cap(address, cap: int) -> None:
    """With `cap` connections open from one address, one more from it is refused (503 or 429, Retry-After,
    JSON) and closed, a client from another address is still served, and once one of the first closes,
    the address is served again."""
    held = []
    try:
        settled = time.monotonic() + 3  # connections an earlier check just closed may still be counted
        while len(held) < cap:
            sock = open_from(address)
            stream = sock.makefile("rb")
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if (status := read_response(stream)[0]) == 200:  # answered, so the server counts it as open
                held.append((sock, stream))
                continue
            stream.close()
            sock.close()
            assert time.monotonic() < settled, f"connection {len(held) + 1} of {cap} from one address got {status}"
            time.sleep(0.05)
        status, headers, body = exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status in (429, 503), f"connection {cap + 1} from one address got {status}, not a refusal"
        assert "retry-after" in headers and "error" in json.loads(body), (headers, body)
        other_status, _, seconds = well_formed_predict(address, "goal")
        assert other_status == 200 and seconds < WELL_FORMED_WITHIN_S, (other_status, seconds)
        sock, stream = held.pop()
        stream.close()
        sock.close()
        deadline = time.monotonic() + 3
        while (status := exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0]) != 200:
            assert time.monotonic() < deadline, f"the address was still refused ({status}) after closing a connection"
            time.sleep(0.05)
    finally:
        for sock, stream in held:
            stream.close()
            sock.close()


# --- the tests: the server `gendistill serve` runs ---------------------------------------------------

LIMITS = ServerLimits(max_body_bytes=8192, max_texts=8, max_text_chars=1000, max_connections=16, max_connections_per_client=4,
                      request_timeout_s=1.0, socket_timeout_s=1.5)


@pytest.fixture(scope="module")
def classifier(bundle):
    from gendistill.runtime import Classifier

    return Classifier.load(bundle)


@pytest.fixture
def server(classifier, caplog, capfd):
    server = PredictionServer(("127.0.0.1", 0), classifier, LIMITS)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    # Abuse is routine for a server: it must neither print tracebacks nor log errors about it.
    assert "Traceback" not in capfd.readouterr().err
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


def address(server) -> tuple[str, int]:
    return server.server_address[:2]


def test_tricklers_do_not_starve_well_formed_clients(server):
    check_tricklers_do_not_starve_others(address(server), tricklers=LIMITS.max_connections + 8)


def test_tricklers_from_a_few_addresses_do_not_starve_others(server):
    # As many addresses as fit in the global slots minus one, each at its own cap: everyone else still has room.
    addresses = LIMITS.max_connections // LIMITS.max_connections_per_client - 1
    check_distributed_tricklers(address(server), addresses, LIMITS.max_connections_per_client)


@pytest.mark.parametrize("body", [False, True], ids=["headers", "body"])
def test_a_trickled_request_is_cut_off_at_the_deadline(server, body):
    check_request_deadline(address(server), LIMITS.request_timeout_s, body=body)


def test_idle_connections_are_closed(server):
    check_idle_connections_closed(address(server), LIMITS.socket_timeout_s)


def test_oversized_headers_get_431(server, classifier):
    check_oversized_headers(address(server), LIMITS.max_header_bytes)
    # A single line over the standard library's own 64 KiB limit, and more than its 100 headers, too.
    for head in (b"X-Long: " + b"a" * 70_000 + b"\r\n", b"".join(b"X-%d: a\r\n" % n for n in range(150))):
        status, headers, body = exchange(address(server), b"GET /health HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
        assert status == 431 and "error" in json.loads(body), (status, body[:200])
    status, answer, _ = well_formed_predict(address(server), "goal for the team")
    assert status == 200 and answer["labels"] == [classifier.predict("goal for the team")]


def test_an_overlong_request_line_is_refused(server):
    status, _, body = exchange(address(server), b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (414, 431) and "error" in json.loads(body)


def test_pipelined_requests_are_answered_in_order(server, classifier):
    first, last = check_pipelined(address(server))
    assert first["labels"] == classifier.predict(["The striker scored"])
    assert last["labels"] == classifier.predict(["Bank shares fell", "A new phone"])


def test_a_half_closed_client_gets_its_answers(server, classifier):
    answers = check_half_closed(address(server))
    assert [answer["labels"] for answer in answers] == [classifier.predict(["The striker scored"]), classifier.predict(["Bank shares fell"])]


def test_a_reset_mid_headers_is_quiet(server, classifier):
    """socketserver prints a traceback to stderr for this by default; the fixture checks that nothing does."""
    with open_from(address(server)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = reset
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Half: a")
        time.sleep(0.1)
    status, answer, _ = well_formed_predict(address(server), "goal")
    assert status == 200 and answer["labels"] == [classifier.predict("goal")]
    time.sleep(0.1)  # for the handler thread to finish with the reset connection


def test_connections_per_client_address_are_capped(server):
    check_per_client_cap(address(server), LIMITS.max_connections_per_client)


def test_refused_connections_take_no_slot(server):
    """One address at its cap, hammering for more, still leaves every other slot to other addresses."""
    held = []
    try:
        for _ in range(LIMITS.max_connections_per_client):
            hold(address(server), held)
        for _ in range(20):
            assert exchange(address(server), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 503
        for n in range(LIMITS.max_connections - LIMITS.max_connections_per_client):
            hold(address(server), held, f"127.0.0.{20 + n}")
        # Every slot is now taken, each by a connection that was allowed: the next one is refused.
        status, headers, _ = exchange(address(server), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", source="127.0.0.99")
        assert status == 503 and "retry-after" in headers
    finally:
        for sock, stream in held:
            stream.close()
            sock.close()


def test_a_connection_the_server_closed_no_longer_counts(server):
    """At its cap but one, an address that reconnects the moment the server has closed its last connection is
    served: the slot is given back before the close the client sees, not some time after it."""
    held = []
    try:
        for _ in range(LIMITS.max_connections_per_client - 1):
            hold(address(server), held)
        for attempt in range(100):
            with open_from(address(server)) as sock, sock.makefile("rb") as stream:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert read_response(stream)[0] == 200, f"reconnection {attempt} was refused"
                assert stream.read() == b""  # the server's close
    finally:
        for sock, stream in held:
            stream.close()
            sock.close()


def test_the_serve_command_applies_the_limits(bundle):
    """`gendistill serve`'s options reach the server: its metadata reports them and it enforces them."""
    import re
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "gendistill.runtime.cli", "serve", str(bundle), "--port", "0", "--max-connections", "6",
         "--max-connections-per-client", "2", "--max-header-bytes", "4096", "--request-timeout", "1", "--idle-timeout", "1.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        match = re.search(r"http://127\.0\.0\.1:(\d+)", process.stdout.readline())
        assert match, process.stderr.read()
        served = ("127.0.0.1", int(match.group(1)))
        status, _, body = exchange(served, b"GET /metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", source=OTHER_CLIENT)
        assert status == 200
        assert json.loads(body)["limits"] | {"max_connections": 6, "max_connections_per_client": 2, "max_header_bytes": 4096,
                                             "request_timeout_s": 1.0, "socket_timeout_s": 1.5} == json.loads(body)["limits"]
        check_oversized_headers(served, 4096)
        # From an address of its own: the server may still count the two connections the check before just ended
        # (it releases a slot when the handler is done, just before the close, which can come after the client read its answer),
        # and at this server's cap of 2 a third from the same address is refused with a 503 (seen once in the suite).
        check_request_deadline(served, 1.0, source="127.0.0.4")
        check_per_client_cap(served, 2)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0 and "Traceback" not in err, err


def test_limits_are_validated():
    from gendistill.runtime.errors import GendistillError

    for name in ("max_header_bytes", "max_connections_per_client", "request_timeout_s"):
        with pytest.raises(GendistillError, match=name):
            ServerLimits(**{name: 0})
