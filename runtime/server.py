"""A small HTTP JSON API over a `Classifier`, on the standard library's ThreadingHTTPServer.

    POST /predict   {"texts": ["...", ...]}  ->  {"labels": [...], "probabilities": [[...]], "label_names": [...]}
    GET  /health    {"status": "ok"}
    GET  /metadata  labels, versions, metrics and model details from bundle.json, and the server's limits

Every bad request gets a 4xx JSON body {"error": "<one sentence>"} and touches nothing shared, so one
client's mistake never affects another's requests. Each connection has its own thread, and what a client
can hold is bounded: a request must arrive whole (headers and body) within `request_timeout_s` of its
first byte (408), its headers may take `max_header_bytes` (431), an idle connection is closed after
`socket_timeout_s`, and one client address may hold `max_connections_per_client` of the
`max_connections` threads (503). So a client that stalls, trickles or disconnects mid-request only ends
its own connection, and it takes many addresses at once to keep the others waiting.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from gendistill.runtime.classifier import Classifier
from gendistill.runtime.errors import GendistillError

log = logging.getLogger(__name__)

# An oversized body up to this many times the limit is read and dropped before answering 413.
DRAIN_FACTOR = 8


@dataclass(frozen=True)
class ServerLimits:
    """What one request, and one client, may ask of the server. Larger requests get 413 before any model
    work is done; the other limits are answered as their docstrings say."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    """Texts per request: bounds the latency one request can impose on the others."""
    max_text_chars: int = 20_000
    max_header_bytes: int = 16 * 1024
    """The request line and headers together; more is answered 431. (The standard library alone would take
    100 header lines of 64 KiB each.)"""
    max_connections: int = 64
    """Open connections (one thread each); more are answered 503 and closed."""
    max_connections_per_client: int = 8
    """Open connections from one client address; more are answered 503 and closed without taking one of
    the `max_connections` slots, so one client, however slow its requests, cannot hold them all."""
    request_timeout_s: float = 10.0
    """A request's headers and body must all arrive within this long of its first byte, or it is answered
    408 and the connection closed: a client trickling a byte at a time holds its slot no longer."""
    socket_timeout_s: float = 30.0
    """An idle connection (no request started) is closed after this long, and no single read or write may
    take longer."""

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value <= 0:
                raise GendistillError(f"Server limit {name} must be positive, not {value!r}.")


class RequestError(Exception):
    """A bad request: answered with `status` and the message, then the connection carries on (or not)."""

    def __init__(self, status: HTTPStatus, message: str, close: bool = False):
        super().__init__(message)
        self.status = status
        self.close = close


class PredictionServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not keep the process alive at shutdown
    # socketserver's default backlog of 5 overflows in a burst of connections, and a client whose SYN was
    # dropped retries only after a second (measured: 24 connections at once took 3.4 s to open).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], classifier: Classifier, limits: ServerLimits = ServerLimits()):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.classifier = classifier
        self.limits = limits
        self.metadata_body = _json_bytes(_metadata(classifier, limits))
        self._connections_lock = threading.Lock()
        self._open = 0
        self._open_per_client: dict[str, int] = {}
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, PredictionHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def process_request(self, request, client_address):
        # Slow clients cannot starve the others: an address holds at most max_connections_per_client threads,
        # each for at most request_timeout_s per request (or socket_timeout_s idle), and its excess
        # connections are refused here, on the accepting thread, without holding a slot. Filling all
        # max_connections takes max_connections / max_connections_per_client addresses at once.
        client = client_address[0]
        limits = self.limits
        with self._connections_lock:
            if self._open_per_client.get(client, 0) >= limits.max_connections_per_client:
                refusal = f"This client already has {limits.max_connections_per_client} connections open, the most allowed; reuse one or retry shortly."
            elif self._open >= limits.max_connections:
                refusal = "The server has too many open connections; retry shortly."
            else:
                refusal = None
                self._open += 1
                self._open_per_client[client] = self._open_per_client.get(client, 0) + 1
        if refusal is not None:
            log.debug("Refused a connection from %s: %s", client, refusal)
            _refuse(request, refusal)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started (e.g. out of threads): nothing will release the slot
            self._release(client)
            raise

    def process_request_thread(self, request, client_address):
        # ThreadingMixIn's own body, with the slot released before the socket is closed rather than after:
        # a client that saw its connection end and reconnects at once must not find it still counted.
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._release(client_address[0])
            self.shutdown_request(request)

    def _release(self, client: str) -> None:
        with self._connections_lock:
            self._open -= 1
            self._open_per_client[client] -= 1
            if not self._open_per_client[client]:
                del self._open_per_client[client]

    def handle_error(self, request, client_address):
        # socketserver would print a traceback to stderr. A client vanishing is routine; anything else is a bug.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("Connection from %s ended: %r", client_address[0], error)
        else:
            log.exception("Unexpected error on the connection from %s", client_address[0])

    @contextlib.contextmanager
    def track_request(self):
        """Around each request's work, so that shutdown can wait for requests in flight."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_until_idle(self, timeout_s: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)


class PredictionHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses one connection for many requests
    # Without this, keep-alive responses stall ~45 ms each on Nagle's algorithm (measured).
    disable_nagle_algorithm = True
    server_version = "gendistill"
    server: PredictionServer

    def setup(self):
        self.timeout = self.server.limits.socket_timeout_s
        super().setup()
        self.rfile.close()  # the base class's reader: ours keeps time and counts the request head
        self._input = _ConnectionInput(self.connection, self.server.limits)
        self.rfile = _RequestReader(self._input, self.server.limits.max_header_bytes)

    def handle_one_request(self):
        limits = self.server.limits
        try:
            # Between requests only the idle timeout applies; the request's own clock starts at its first byte.
            if not self.rfile.peek(1):
                self.close_connection = True
                return
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            return
        self._input.deadline = time.monotonic() + limits.request_timeout_s
        self.rfile.count_head()
        # What an error answer needs, should one come before the request line is parsed.
        self.requestline, self.command, self.request_version = "", "", self.protocol_version
        try:
            super().handle_one_request()  # parse_request ends the head's count
        except RequestError as error:  # while reading the head: too large, or past the deadline
            self._send_error(error)
        except ConnectionError:
            self.close_connection = True
        finally:
            self._input.deadline = None
            self.rfile.end_head()

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.rfile.end_head()
        return parsed

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/health":
            self._send(HTTPStatus.OK, b'{"status": "ok"}')
        elif path == "/metadata":
            self._send(HTTPStatus.OK, self.server.metadata_body)
        elif path == "/predict":
            self._send_error(RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "Use POST /predict with a JSON body {\"texts\": [...]}."))
        else:
            self._send_error(RequestError(HTTPStatus.NOT_FOUND, f"No such endpoint {self.path!r}; use POST /predict, GET /health or GET /metadata."))

    def do_POST(self):
        with self.server.track_request():
            self._answer_predict()

    def _answer_predict(self):
        try:
            if urlsplit(self.path).path != "/predict":
                raise RequestError(HTTPStatus.NOT_FOUND, f"No such endpoint {self.path!r}; use POST /predict.", close=True)
            body = self._read_body()
            if body is None:  # the client went away mid-request: nobody to answer
                self.close_connection = True
                return
            texts = self._parse_texts(body)
            classifier = self.server.classifier
            probabilities = classifier.predict_proba(texts)
            labels = [classifier.labels[index] for index in probabilities.argmax(axis=1).tolist()]
            answer = {"labels": labels, "probabilities": probabilities.tolist(), "label_names": classifier.labels}
            self._send(HTTPStatus.OK, _json_bytes(answer))
        except RequestError as error:
            self._send_error(error)
        except Exception:
            # A bug must cost one request, not the server: log it, answer 500, carry on.
            log.exception("Unexpected error while answering %s %s", self.command, self.path)
            self._send_error(RequestError(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error; see the server log.", close=True))

    def _read_body(self) -> bytes | None:
        limits = self.server.limits
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Chunked bodies are not accepted; send a Content-Length.", close=True)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "A Content-Length header is required.", close=True)
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length {length_header!r} is not a byte count.", close=True)
        if length > limits.max_body_bytes:
            # Closing with unread data in the socket makes the kernel send a reset, which can destroy
            # our answer before the client reads it; so a moderately oversized body is read and dropped.
            drained = length <= DRAIN_FACTOR * limits.max_body_bytes and self._discard(length)
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"The body is {length} bytes; the limit is {limits.max_body_bytes}.", close=not drained)
        try:
            body = self.rfile.read(length)
        except (TimeoutError, ConnectionError):
            return None
        return body if len(body) == length else None

    def _discard(self, length: int) -> bool:
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    return False
                length -= len(chunk)
        except (TimeoutError, ConnectionError):
            return False
        return True

    def _parse_texts(self, body: bytes) -> list[str]:
        limits = self.server.limits
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "The body is not valid UTF-8 JSON.") from None
        texts = request.get("texts") if isinstance(request, dict) else None
        if not isinstance(texts, list):
            raise RequestError(HTTPStatus.BAD_REQUEST, 'The body must be a JSON object {"texts": [string, ...]}.')
        if not texts:
            raise RequestError(HTTPStatus.BAD_REQUEST, '"texts" is empty; send at least one string.')
        if len(texts) > limits.max_texts:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f'"texts" has {len(texts)} items; the limit is {limits.max_texts} per request.')
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise RequestError(HTTPStatus.BAD_REQUEST, f'"texts"[{index}] is {_json_type(text)}, not a string.')
            if len(text) > limits.max_text_chars:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f'"texts"[{index}] has {len(text)} characters; the limit is {limits.max_text_chars}.')
        return texts

    def send_error(self, code, message=None, explain=None):
        """Errors the base class detects itself (bad request line, unknown method, header trouble):
        answered in JSON like ours instead of its HTML page, and with a status line even when the
        request line was too garbled to tell the HTTP version (the base class would omit it)."""
        self.request_version = self.protocol_version
        status = HTTPStatus(code)
        if status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:  # its own limits: a 64 KiB line, 100 headers
            message = f"The request's headers are too large; the limit is {self.server.limits.max_header_bytes} bytes in at most 100 lines."
        self._send_error(RequestError(status, message or status.phrase, close=True))

    def _send_error(self, error: RequestError):
        if error.close:
            self.close_connection = True
        self._send(error.status, _json_bytes({"error": str(error)}))

    def _send(self, status: HTTPStatus, body: bytes):
        try:
            _set_timeout(self.connection, self.server.limits.socket_timeout_s)  # reads may have left it shorter
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # the client left; nothing more to do for it

    def log_message(self, format, *args):
        # The base class writes every request to stderr; library code logs instead.
        log.debug("%s - %s", self.address_string(), format % args)


def serve_until_signalled(server: PredictionServer, drain_timeout_s: float = 10.0) -> None:
    """Serve until SIGINT or SIGTERM, then stop accepting, let requests in flight finish, and close.

    Call from the main thread (only it can receive signals); the previous handlers are restored after.
    """

    def request_stop(signum, frame):
        # shutdown() waits for serve_forever() to return, which runs in this very thread: ask from another.
        threading.Thread(target=server.shutdown, daemon=True).start()

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, request_stop) for sig in stop_signals}
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not server.wait_until_idle(drain_timeout_s):
            log.warning("Requests still running after %.0f s; closing anyway.", drain_timeout_s)
        server.server_close()


class _ConnectionInput(io.RawIOBase):
    """The connection's socket as the handler reads it. With no deadline (between requests) a read waits
    up to the idle timeout; with one, all the reads of a request share it, however little each waits,
    so a client trickling a byte at a time cannot stretch a request past `request_timeout_s`."""

    def __init__(self, sock: socket.socket, limits: ServerLimits):
        self._sock = sock
        self._limits = limits
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        timeout = self._limits.socket_timeout_s
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise self._late()
        _set_timeout(self._sock, timeout)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise self._late() from None
            raise

    def _late(self) -> RequestError:
        return RequestError(HTTPStatus.REQUEST_TIMEOUT, f"The request did not arrive whole within {self._limits.request_timeout_s:g} s.", close=True)


class _RequestReader(io.BufferedReader):
    """Counts the bytes of a request's line and headers against the limit, from `count_head()` to
    `end_head()`. readline is all the standard library reads them with."""

    def __init__(self, raw: _ConnectionInput, max_head_bytes: int):
        super().__init__(raw)
        self.max_head_bytes = max_head_bytes
        self.head_left: int | None = None

    def count_head(self) -> None:
        self.head_left = self.max_head_bytes

    def end_head(self) -> None:
        self.head_left = None

    def readline(self, size: int = -1) -> bytes:
        if self.head_left is None:
            return super().readline(size)
        line = super().readline(self.head_left + 1 if size < 0 else min(size, self.head_left + 1))
        self.head_left -= len(line)
        if self.head_left < 0:
            raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                               f"The request's line and headers are over the limit of {self.max_head_bytes} bytes.", close=True)
        return line


def _set_timeout(sock: socket.socket, timeout_s: float) -> None:
    # Setting it is a system call; most requests arrive in one read and never change it.
    if sock.gettimeout() != timeout_s:
        sock.settimeout(timeout_s)


def _refuse(request: socket.socket, message: str) -> None:
    body = _json_bytes({"error": message})
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nRetry-After: 1\r\n\r\n"
    ).encode("ascii")
    try:
        request.settimeout(1.0)
        request.sendall(head + body)
    except OSError:
        pass


def _metadata(classifier: Classifier, limits: ServerLimits) -> dict:
    manifest = classifier.manifest
    model = manifest.get("model", {})
    return {
        "labels": classifier.labels,
        "versions": manifest.get("versions", {}),
        "metrics": manifest.get("metrics", {}),
        "model": {key: model.get(key) for key in ("architecture", "precision", "params", "opset")},
        "preprocessing": manifest.get("preprocessing", {}),
        "limits": asdict(limits),
    }


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_type(value) -> str:
    names = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
