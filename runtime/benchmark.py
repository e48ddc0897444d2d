"""`gendistill bench`'s measurements: in-process latency and throughput, and a server under load.

Every loop is bounded both by time and by count, and the server is a subprocess on 127.0.0.1 that is
always stopped (SIGTERM, then kill) before returning, so a benchmark cannot outlive its caller.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gendistill.runtime.bundle import LAYOUT
from gendistill.runtime.classifier import Classifier
from gendistill.runtime.errors import GendistillError

BATCH_SIZES = (1, 32, 256)
MAX_CALLS = 200_000
"""Upper bound on calls in any one timed loop, whatever the duration."""
SERVER_START_TIMEOUT_S = 60.0


@dataclass
class LatencyStats:
    median_ms: float
    p99_ms: float
    count: int

    @classmethod
    def from_seconds(cls, seconds: list[float]) -> "LatencyStats":
        ordered = sorted(seconds)
        return cls(
            median_ms=1000 * statistics.median(ordered),
            p99_ms=1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            count=len(ordered),
        )


@dataclass
class ServerStats:
    clients: int
    requests_per_s: float
    latency: LatencyStats
    failed_requests: int
    rss_mb: float | None
    """Resident memory of the serving process after the load, in MiB (None off Linux)."""
    peak_rss_mb: float | None
    clean_shutdown: bool


@dataclass
class BenchResult:
    model: str
    """Architecture, precision and parameter count, from bundle.json."""
    texts: int
    mean_chars: float
    threads: int
    batch1: LatencyStats
    batch1_new_words: LatencyStats
    """Batch-1 with the runtime's word cache emptied before each text: every word tokenized afresh."""
    throughput: dict[int, float]
    """batch size -> texts per second."""
    server: ServerStats | None


def golden_texts(bundle: str | Path) -> list[str]:
    """The bundle's golden.jsonl texts: real test texts plus edge cases, the default benchmark input."""
    path = Path(bundle) / LAYOUT.golden
    if not path.is_file():
        raise GendistillError(f"{path} is missing; pass --texts FILE or use a complete bundle.")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def measure_latency(classifier: Classifier, texts: list[str], duration_s: float, new_words: bool = False) -> LatencyStats:
    """Batch-1 `predict` of one string at a time, tokenization included. The texts come round again and again, so the
    runtime's word cache soon knows every word; with `new_words` it is emptied before each text (untimed), so every
    word is tokenized afresh: the cost of a text whose words the runtime has never read."""
    classifier.predict(texts[0])  # the first run allocates onnxruntime's buffers
    seconds = []
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline and len(seconds) < MAX_CALLS:
        for text in texts:
            if new_words:
                classifier.inputs.word_ids.clear()
            start = time.perf_counter()
            classifier.predict(text)
            seconds.append(time.perf_counter() - start)
    return LatencyStats.from_seconds(seconds)


def measure_throughput(classifier: Classifier, texts: list[str], batch_size: int, duration_s: float) -> float:
    """Texts per second through `predict_proba` with lists of `batch_size` texts (cycled from `texts`)."""
    batches = [[texts[(start + i) % len(texts)] for i in range(batch_size)] for start in range(0, len(texts), batch_size)]
    classifier.predict_proba(batches[0])
    done = 0
    start = time.perf_counter()
    deadline = start + duration_s
    while time.perf_counter() < deadline and done < MAX_CALLS * batch_size:
        for batch in batches:
            classifier.predict_proba(batch)
            done += len(batch)
    return done / (time.perf_counter() - start)


def measure_server(bundle: str | Path, texts: list[str], clients: int, duration_s: float, threads: int = 1) -> ServerStats:
    """Start `gendistill serve` on a free 127.0.0.1 port, load it with `clients` keep-alive clients
    sending one text per request for `duration_s`, read its memory, then stop it."""
    with tempfile.TemporaryFile() as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "gendistill.runtime.cli", "serve", str(bundle), "--host", "127.0.0.1", "--port", "0", "--threads", str(threads),
             # Every load client comes from 127.0.0.1: one client address, as far as the server can tell.
             "--max-connections-per-client", str(max(clients, 8))],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
        try:
            host, port = _wait_for_address(server, stderr)
            seconds, failures, elapsed = _load(host, port, texts, clients, duration_s)
            rss_mb, peak_rss_mb = _rss_mb(server.pid)
        finally:
            clean = _stop(server)
    if not seconds:
        raise GendistillError(f"No request to the benchmark server succeeded ({failures} failed).")
    return ServerStats(clients, len(seconds) / elapsed, LatencyStats.from_seconds(seconds), failures, rss_mb, peak_rss_mb, clean)


def run_benchmark(bundle: str | Path, texts: list[str] | None = None, threads: int = 1, duration_s: float = 2.0,
                  server_clients: int = 4) -> BenchResult:
    """All of `gendistill bench`: `server_clients=0` skips the server part."""
    texts = golden_texts(bundle) if texts is None else texts
    texts = [text for text in texts if text.strip()] or texts
    if not texts:
        raise GendistillError("There are no texts to benchmark with.")
    classifier = Classifier.load(bundle, threads=threads)
    model = classifier.manifest["model"]
    params = model.get("params")
    description = f"{model.get('architecture', '?')} {model.get('precision', '?')}, {f'{params:,}' if isinstance(params, int) else '?'} parameters"
    batch1_new_words = measure_latency(classifier, texts, duration_s, new_words=True)
    batch1 = measure_latency(classifier, texts, duration_s)
    throughput = {size: measure_throughput(classifier, texts, size, duration_s) for size in BATCH_SIZES}
    del classifier
    server = measure_server(bundle, texts, server_clients, duration_s, threads) if server_clients > 0 else None
    return BenchResult(description, len(texts), statistics.mean(map(len, texts)), threads, batch1, batch1_new_words, throughput, server)


def format_table(result: BenchResult) -> str:
    """What `gendistill bench` prints; targets are the product's, for the demo bundle on 2 vCPUs (batch-1: the student bar, 0.2 ms)."""
    rows = [
        ("batch-1 predict, median (incl. tokenization)", f"{result.batch1.median_ms:.3f} ms", "< 0.2 ms"),
        ("batch-1 predict, p99", f"{result.batch1.p99_ms:.3f} ms", ""),
        ("batch-1 predict, median, every word new to the runtime", f"{result.batch1_new_words.median_ms:.3f} ms", ""),
    ]
    for size, rate in result.throughput.items():
        rows.append((f"throughput, batch {size}", f"{rate:,.0f} texts/s", "> 10,000 texts/s" if size == 256 else ""))
    server = result.server
    if server is not None:
        rows += [
            (f"server, {server.clients} client{'s' if server.clients != 1 else ''}, batch-1 requests", f"{server.requests_per_s:,.0f} req/s", ""),
            ("server request latency, median", f"{server.latency.median_ms:.3f} ms", "< 2 ms"),
            ("server request latency, p99", f"{server.latency.p99_ms:.3f} ms", ""),
            ("server failed requests", f"{server.failed_requests}", "0"),
            ("server RSS after load", _mb(server.rss_mb), "< 120 MB"),
            ("server peak RSS", _mb(server.peak_rss_mb), ""),
            ("server stopped cleanly on SIGTERM", "yes" if server.clean_shutdown else "no", "yes"),
        ]
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [
        f"{result.model}; {result.texts} texts, {result.mean_chars:.0f} characters on average; onnxruntime threads: {result.threads}",
        f"{'measure':<{width}}  {'value':>{value_width}}  target",
    ]
    lines += [f"{name:<{width}}  {value:>{value_width}}  {target}".rstrip() for name, value, target in rows]
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} MiB"


def _wait_for_address(server: subprocess.Popen, stderr) -> tuple[str, int]:
    """The host and port from the URL `gendistill serve` prints once it is listening."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(server.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=SERVER_START_TIMEOUT_S)
    except queue.Empty:
        line = ""
    match = re.search(r"http://([\w.\-]+):(\d+)", line)
    if match is None:
        server.kill()
        server.wait()
        stderr.seek(0)
        detail = stderr.read().decode("utf-8", "replace").strip().splitlines()
        raise GendistillError(f"The benchmark server did not start: {detail[-1] if detail else 'no output'}.")
    return match.group(1), int(match.group(2))


def _load(host: str, port: int, texts: list[str], clients: int, duration_s: float) -> tuple[list[float], int, float]:
    bodies = [json.dumps({"texts": [text]}).encode("utf-8") for text in texts]
    headers = {"Content-Type": "application/json"}
    all_seconds: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    start_together = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(number: int) -> None:
        seconds = all_seconds[number]
        connection = http.client.HTTPConnection(host, port, timeout=10)
        start_together.wait()
        index = number
        while time.perf_counter() < deadline[0] and len(seconds) < MAX_CALLS:
            body = bodies[index % len(bodies)]
            index += 1
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict", body, headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()  # reconnects on the next request
            if ok:
                seconds.append(time.perf_counter() - start)
            else:
                failures[number] += 1
        connection.close()

    workers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    deadline[0] = start + duration_s
    start_together.wait()
    for worker in workers:
        worker.join(timeout=duration_s + 30)
    elapsed = time.perf_counter() - start
    return [s for seconds in all_seconds for s in seconds], sum(failures), elapsed


def _rss_mb(pid: int) -> tuple[float | None, float | None]:
    """VmRSS and VmHWM (peak) from /proc, in MiB; (None, None) where /proc is not available."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    to_mb = lambda key: int(values[key]) / 1024 if key in values else None  # noqa: E731
    return to_mb("VmRSS"), to_mb("VmHWM")


def _stop(server: subprocess.Popen) -> bool:
    """SIGTERM and wait; kill if it does not stop in time. True when it exited cleanly by itself."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return False
    finally:
        if server.stdout is not None:
            server.stdout.close()
    return code == 0
