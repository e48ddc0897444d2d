"""A small HTTP JSON API over a `Classifier`, on the standard library's ThreadingHTTPServer.

    POST /predict   {"texts": ["...", ...]}  ->  {"labels": [...], "probabilities": [[...]], "label_names": [...]}
    GET  /health    {"status": "ok"}
    GET  /metadata  labels, versions, metrics and model details from bundle.json, and the server's limits

Every bad request gets a 4xx JSON body {"error": "<one sentence>"} and touches nothing shared, so one
client's mistake never affects another's requests. Each connection has its own thread and a socket
timeout, so a client that stalls or disconnects mid-request only ends its own connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
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
    """What one request may ask for; larger requests get 413 before any model work is done."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    """Texts per request: bounds the latency one request can impose on the others."""
    max_text_chars: int = 20_000
    max_connections: int = 64
    """Open connections (one thread each); more are answered 503 and closed."""
    socket_timeout_s: float = 30.0
    """A connection that sends nothing for this long is closed, so stalled clients cannot pile up."""

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

    def __init__(self, address: tuple[str, int], classifier: Classifier, limits: ServerLimits = ServerLimits()):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.classifier = classifier
        self.limits = limits
        self.metadata_body = _json_bytes(_metadata(classifier, limits))
        self._connections = threading.BoundedSemaphore(limits.max_connections)
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, PredictionHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def process_request(self, request, client_address):
        if not self._connections.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

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
        self._send_error(RequestError(status, message or status.phrase, close=True))

    def _send_error(self, error: RequestError):
        if error.close:
            self.close_connection = True
        self._send(error.status, _json_bytes({"error": str(error)}))

    def _send(self, status: HTTPStatus, body: bytes):
        try:
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


def _refuse_busy(request: socket.socket) -> None:
    body = _json_bytes({"error": "The server has too many open connections; retry shortly."})
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
