"""The hand-written server against uvicorn, side by side: the same load and the same abuse checks.

    python benchmarks/server/compare.py [BUNDLE] [--baseline OLD_SERVER_PY] [--rounds 3] [--duration 2] [--clients 4]

Every server runs as its own process on 127.0.0.1 over the same bundle, all at once. Each is loaded the
way `gendistill bench` loads one (`clients` keep-alive clients, one text per request, `duration`
seconds), in `rounds` rounds that go round the servers in turn, so that whatever else the machine is
doing falls on all of them alike; then its RSS is read, the checks of tests/test_server_abuse.py run
against it, and it gets SIGTERM.
Without BUNDLE, the tests' toy bundle is built in a temporary folder (needs the compress extra).
--baseline serves another version of runtime/server.py as well (`git show REV:runtime/server.py > old.py`).
uvicorn columns need `pip install uvicorn httptools uvloop`; they are left out when it is missing.
Prints a Markdown table; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

# The same settings for every server wherever it has the knob; short timeouts keep the checks short.
REQUEST_TIMEOUT_S = 2.0
IDLE_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 64
PER_CLIENT = 8
MAX_HEADER_BYTES = 16 * 1024


# --- the servers, each run as `compare.py --serve KIND BUNDLE` ----------------------------------------


def serve_stdlib_file(path: str, bundle: str) -> None:
    """Another version of runtime/server.py, served with whichever of our limits it knows."""
    import dataclasses

    from gendistill.runtime.classifier import Classifier

    spec = importlib.util.spec_from_file_location("baseline_server", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses looks itself up there
    spec.loader.exec_module(module)
    known = {field.name for field in dataclasses.fields(module.ServerLimits)}
    wanted = {"socket_timeout_s": IDLE_TIMEOUT_S, "request_timeout_s": REQUEST_TIMEOUT_S, "max_connections": MAX_CONNECTIONS,
              "max_connections_per_client": PER_CLIENT, "max_header_bytes": MAX_HEADER_BYTES}
    limits = module.ServerLimits(**{name: value for name, value in wanted.items() if name in known})
    server = module.PredictionServer(("127.0.0.1", 0), Classifier.load(bundle), limits)
    print(f"Serving on {server.url}", flush=True)
    module.serve_until_signalled(server)


def asgi_app(classifier):
    """The same API as ours, as a minimal ASGI app: no framework, so uvicorn's own costs are what is measured."""
    max_body = 1 << 20

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        status, answer = 404, {"error": "No such endpoint."}
        if scope["path"] == "/health" and scope["method"] == "GET":
            status, answer = 200, {"status": "ok"}
        elif scope["path"] == "/predict" and scope["method"] == "POST":
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False) and size <= max_body
            try:
                texts = json.loads(b"".join(chunks))["texts"] if size <= max_body else None
                assert isinstance(texts, list) and texts and all(isinstance(text, str) for text in texts)
            except Exception:
                status, answer = (413, {"error": "Too large."}) if size > max_body else (400, {"error": "Bad body."})
            else:
                # Inline on the event loop: a batch-1 prediction is ~0.1 ms, cheaper than a hop to a thread.
                probabilities = classifier.predict_proba(texts)
                labels = [classifier.labels[i] for i in probabilities.argmax(axis=1).tolist()]
                status, answer = 200, {"labels": labels, "probabilities": probabilities.tolist(), "label_names": classifier.labels}
        body = json.dumps(answer, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def serve_uvicorn(http_impl: str, loop: str, bundle: str) -> None:
    import uvicorn

    from gendistill.runtime.classifier import Classifier

    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it every
    # response waits on Nagle's algorithm (measured: 45 ms a request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # before the URL is printed, so that no client is refused while uvicorn starts
    config = uvicorn.Config(asgi_app(Classifier.load(bundle)), http=http_impl, loop=loop, lifespan="off", access_log=False,
                            log_level="error", timeout_keep_alive=int(IDLE_TIMEOUT_S), h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    print(f"Serving on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    # uvicorn re-raises the stop signal after its graceful shutdown; make that a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.Server(config).run(sockets=[sock])


# --- measuring ------------------------------------------------------------------------------------


def checks() -> list[tuple[str, Callable]]:
    import test_server_abuse as abuse

    return [
        (f"{MAX_CONNECTIONS + 8} tricklers from one address; another client answered < 1 s", lambda a: abuse.check_tricklers_do_not_starve_others(a, MAX_CONNECTIONS + 8)),
        (f"tricklers from {MAX_CONNECTIONS // PER_CLIENT - 1} addresses x {PER_CLIENT}; another client answered < 1 s", lambda a: abuse.check_distributed_tricklers(a, MAX_CONNECTIONS // PER_CLIENT - 1, PER_CLIENT)),
        (f"tricklers from {MAX_CONNECTIONS // PER_CLIENT + 1} addresses x {PER_CLIENT}, more than the {MAX_CONNECTIONS} slots; another client answered < 1 s", lambda a: abuse.check_distributed_tricklers(a, MAX_CONNECTIONS // PER_CLIENT + 1, PER_CLIENT)),
        (f"headers trickled in: cut off at {REQUEST_TIMEOUT_S:.0f} s (408)", lambda a: abuse.check_request_deadline(a, REQUEST_TIMEOUT_S)),
        (f"body trickled in: cut off at {REQUEST_TIMEOUT_S:.0f} s (408)", lambda a: abuse.check_request_deadline(a, REQUEST_TIMEOUT_S, body=True)),
        (f"silent and idle keep-alive connections closed after {IDLE_TIMEOUT_S:.0f} s", lambda a: abuse.check_idle_connections_closed(a, IDLE_TIMEOUT_S)),
        ("32 KiB of headers: 431 with JSON", lambda a: abuse.check_oversized_headers(a, MAX_HEADER_BYTES)),
        ("4 pipelined requests answered in order", abuse.check_pipelined),
        ("half-closed socket gets both answers", abuse.check_half_closed),
        (f"connection {PER_CLIENT + 1} from one address refused, others served", lambda a: abuse.check_per_client_cap(a, PER_CLIENT)),
    ]


def start(command: list[str], stderr) -> tuple[subprocess.Popen, tuple[str, int]]:
    from gendistill.runtime.benchmark import _wait_for_address

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
    return process, _wait_for_address(process, stderr)


def load(address, texts: list[str], clients: int, duration_s: float) -> tuple[float, float, float, int]:
    """req/s, p50 ms, p99 ms, failed requests."""
    from gendistill.runtime.benchmark import LatencyStats, _load

    seconds, failures, elapsed = _load(*address, texts, clients, duration_s)
    latency = LatencyStats.from_seconds(seconds or [float("nan")])
    return len(seconds) / elapsed, latency.median_ms, latency.p99_ms, failures


def run_checks(name: str, address) -> dict[str, str]:
    import test_server_abuse as abuse

    results = {}
    for check_name, check in checks():
        # A server that does not cut off slow clients may still hold the last check's connections.
        settled = time.monotonic() + 5
        while abuse.well_formed_predict(address, "settle", source="127.0.0.250")[0] != 200 and time.monotonic() < settled:
            time.sleep(0.1)
        started = time.monotonic()
        try:
            check(address)
            results[check_name] = "yes"
        except (AssertionError, OSError, ValueError) as failure:
            results[check_name] = f"**no**: {str(failure).splitlines()[0][:90] or type(failure).__name__}"
        print(f"  {name}: {check_name}: {results[check_name]} ({time.monotonic() - started:.1f} s)", file=sys.stderr, flush=True)
    return results


def median_and_range(values: list[float], form: str) -> str:
    ordered = sorted(values)
    middle = ordered[len(ordered) // 2]
    return form.format(middle) if len(ordered) == 1 else f"{form.format(middle)} ({form.format(ordered[0])}-{form.format(ordered[-1])})"


def compare(servers: dict[str, list[str]], texts: list[str], clients: int, duration_s: float, rounds: int) -> dict[str, dict[str, str]]:
    """All servers run at once, idle but for the one under load; the load rounds go round the servers in
    turn, so that whatever else the machine does falls on all of them alike. Then each one's RSS, checks, stop."""
    from gendistill.runtime.benchmark import _rss_mb, _stop

    running, logs = {}, {}
    columns: dict[str, dict[str, str]] = {}
    with contextlib.ExitStack() as files:
        try:
            for name, command in servers.items():
                logs[name] = files.enter_context(tempfile.TemporaryFile())
                running[name] = start(command, logs[name])
            samples: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in servers}
            for round_ in range(rounds):
                for name, (_, address) in running.items():
                    samples[name].append(load(address, texts, clients, duration_s))
                    print(f"round {round_ + 1}, {name}: {samples[name][-1][0]:,.0f} req/s", file=sys.stderr, flush=True)
            for name, (process, address) in running.items():
                rss_mb, _ = _rss_mb(process.pid)
                checked = run_checks(name, address)
                _, peak_mb = _rss_mb(process.pid)
                columns[name] = {
                    "req/s": median_and_range([s[0] for s in samples[name]], "{:,.0f}"),
                    "latency p50": median_and_range([s[1] for s in samples[name]], "{:.2f}") + " ms",
                    "latency p99": median_and_range([s[2] for s in samples[name]], "{:.2f}") + " ms",
                    "failed requests under load": str(sum(s[3] for s in samples[name])),
                    "RSS after load": f"{rss_mb:.1f} MiB",
                    "peak RSS (after the checks too)": f"{peak_mb:.1f} MiB",
                    **checked,
                }
        finally:
            for name, (process, _) in running.items():
                clean = _stop(process)
                if name in columns:
                    columns[name]["stopped cleanly on SIGTERM"] = "yes" if clean else "no"
                    logs[name].seek(0)
                    columns[name]["tracebacks on stderr"] = str(logs[name].read().decode("utf-8", "replace").count("Traceback"))
    return columns


def toy_bundle(folder: Path) -> Path:
    from conftest import make_student_run, toy_corpus

    from gendistill.compressor.export_stage import run_export
    from gendistill.export.bundle import ExportSettings

    run = make_student_run(folder / "run", toy_corpus())
    run_export(ExportSettings(), run, folder / "bundle")
    return folder / "bundle"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?")
    parser.add_argument("--baseline", help="another runtime/server.py to measure too")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of load per round")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds per server, taken in turn")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, *rest = args.serve
        if kind == "file":
            serve_stdlib_file(*rest)
        else:
            serve_uvicorn(*kind.split("+"), *rest)
        return

    with tempfile.TemporaryDirectory() as scratch:
        bundle = args.bundle or str(toy_bundle(Path(scratch)))
        from gendistill.runtime.benchmark import golden_texts

        texts = [text for text in golden_texts(bundle) if text.strip()]
        me = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        servers = {}
        if args.baseline:
            servers["baseline (hand-written, before)"] = me + ["file", args.baseline, bundle]
        servers["hand-written (`gendistill serve`)"] = [
            sys.executable, "-m", "gendistill.runtime.cli", "serve", bundle, "--port", "0",
            "--request-timeout", str(REQUEST_TIMEOUT_S), "--idle-timeout", str(IDLE_TIMEOUT_S), "--max-connections", str(MAX_CONNECTIONS),
            "--max-connections-per-client", str(PER_CLIENT), "--max-header-bytes", str(MAX_HEADER_BYTES)]
        if importlib.util.find_spec("uvicorn"):
            servers["uvicorn, h11"] = me + ["h11+asyncio", bundle]
            if importlib.util.find_spec("httptools") and importlib.util.find_spec("uvloop"):
                servers["uvicorn, httptools + uvloop"] = me + ["httptools+uvloop", bundle]
        columns = compare(servers, texts, args.clients, args.duration, args.rounds)

    print(f"{args.clients} keep-alive clients, batch-1 requests, {args.rounds} rounds of {args.duration:g} s per server, in turn "
          f"(median, range); {len(texts)} texts; Python {sys.version.split()[0]}\n")
    print("| | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row in next(iter(columns.values())):
        print(f"| {row} | " + " | ".join(column[row] for column in columns.values()) + " |")


if __name__ == "__main__":
    main()
