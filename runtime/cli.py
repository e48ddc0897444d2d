"""The `gendistill` command line: the root group, and `predict`, `serve` and `bench` (core install).

Commands are thin click wrappers over plain functions. The group lives in the core package, so the
core install (numpy + onnxruntime + sentencepiece + click) has a working `gendistill`; the pipeline's
commands are imported only when invoked, and on a core install they answer with the one sentence that
says how to install them. `gendistill --help` imports neither torch nor the pipeline. Only these
commands import click; the library (`import gendistill.runtime`) never does.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import logging
import sys
from pathlib import Path

import click

from gendistill.runtime.bundle import json_line
from gendistill.runtime.errors import COMPRESS_EXTRA, GendistillError, require_extra
from gendistill.runtime.tables import read_texts

CHUNK_SIZE = 4096
"""Texts classified and written per step, so a huge input streams instead of waiting for all of it."""
TABLE_TEXT_WIDTH = 70

# name -> ("module:attribute", the short help shown by `gendistill --help`, whether it needs the compress extra)
COMMANDS = {
    "compress": ("gendistill.compressor.commands:compress", "Compress a classifier for DATA into a tiny student and bundle.", True),
    "demo": ("gendistill.compressor.commands:demo", "The embedded default: Rotten Tomatoes, packaged teacher and generator.", True),
    "benchmark": ("gendistill.compressor.benchmark.cli:benchmark", "Reproduce the papers' tables on real data, against the usual alternatives.", True),
    "export": ("gendistill.compressor.commands:export", "Export a run's student to a verified ONNX bundle.", True),
    "bench-synthesize": ("gendistill.compressor.commands:bench_synthesize", "Compare the sampling backends on a run's generator: speed, memory, quality.", True),
    "bench-teacher": ("gendistill.compressor.commands:bench_teacher", "Compare teacher recipes over seeds: accuracy, calibration, seconds.", True),
    "predict": ("gendistill.runtime.cli:predict", "Classify texts with a bundle.", False),
    "serve": ("gendistill.runtime.cli:serve", "Serve a bundle over HTTP.", False),
    "bench": ("gendistill.runtime.cli:bench", "Measure a bundle's latency, throughput and server load on this machine.", False),
    "demo-web": ("gendistill.runtime.web:demo_web", "Serve the mobile demo: the student runs in the browser.", False),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, short_help, needs_extra = COMMANDS[name]
        if needs_extra and not _extra_installed():
            return _needs_extra(name, short_help)
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx, formatter):
        """List the commands from COMMANDS without importing them (the pipeline's import torch-free but not cheap)."""
        rows = [(name, help_text + ("" if not needs or _extra_installed() else ' (needs "gendistill[compress]")'))
                for name, (_, help_text, needs) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GendistillError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


def _extra_installed() -> bool:
    return all(importlib.util.find_spec(module) is not None for module in COMPRESS_EXTRA)


def _needs_extra(name: str, short_help: str) -> click.Command:
    """A stand-in for a pipeline command on the core install: any use of it says what to install."""

    def refuse(**_):
        require_extra(*COMPRESS_EXTRA)

    return click.Command(name, callback=refuse, help=short_help, context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                                                                   "help_option_names": []},
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gendistill")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def main(verbose: bool):
    """Compress a text classifier into a tiny, fast student by generation-distillation."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    for noisy in ("transformers", "torch", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Texts to classify: a .csv/.tsv/.jsonl table, any other file one text per line; '-' reads stdin.")
@click.option("--text-column", default=None, help="Column (CSV/TSV) or field (JSONL) holding the text (detected if omitted).")
@click.option("--label-column", default=None, help="Column or field holding the true label, for --evaluate (detected if omitted).")
@click.option("--format", "output_format", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True,
              help="table: label, confidence, text; jsonl: text, label, probabilities per line; csv: one probability column per label.")
@click.option("--evaluate", is_flag=True, help="Compare with the labels in --input and print accuracy and a confusion matrix.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="onnxruntime threads.")
def predict(bundle: Path, texts: tuple[str, ...], input_path: Path | None, text_column: str | None, label_column: str | None,
            output_format: str, evaluate: bool, threads: int):
    """Classify TEXTs, the texts of --input, or lines from stdin, with the bundle at BUNDLE."""
    from gendistill.runtime.classifier import Classifier

    if texts and input_path is not None:
        raise GendistillError("Give texts as arguments or with --input, not both.")
    if evaluate and input_path is None:
        raise GendistillError("--evaluate needs a labeled --input file (.csv or .jsonl with a label column).")
    classifier = Classifier.load(bundle, threads=threads)
    if evaluate:
        rows = read_texts(input_path, text_column, label_column, with_labels=True)
        click.echo(format_evaluation(classifier, [text for text, _ in rows], [label for _, label in rows]))
        return
    if texts:
        all_texts = list(texts)
    elif input_path is not None:
        all_texts = [text for text, _ in read_texts(input_path, text_column)]
    elif sys.stdin.isatty():
        raise GendistillError("No texts: pass them as arguments, with --input FILE, or on stdin.")
    else:
        all_texts = [text for text, _ in read_texts("-")]
    if not all_texts:
        raise GendistillError("The input holds no texts.")
    writer = _OUTPUT_WRITERS[output_format](classifier.labels)
    for start in range(0, len(all_texts), CHUNK_SIZE):
        chunk = all_texts[start : start + CHUNK_SIZE]
        probabilities = classifier.predict_proba(chunk)
        for text, row in zip(chunk, probabilities.tolist()):
            click.echo(writer(text, row))


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 exposes it to the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port; 0 picks a free one.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="onnxruntime threads per request.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1 << 20, show_default=True, help="Largest request body.")
@click.option("--max-texts", type=click.IntRange(min=1), default=256, show_default=True, help="Most texts in one request.")
@click.option("--max-text-chars", type=click.IntRange(min=1), default=20_000, show_default=True, help="Longest text, in characters.")
@click.option("--max-header-bytes", type=click.IntRange(min=1), default=16 * 1024, show_default=True,
              help="Largest request line and headers together; more is answered 431.")
@click.option("--max-connections", type=click.IntRange(min=1), default=64, show_default=True,
              help="Open connections (one thread each); more are answered 503.")
@click.option("--max-connections-per-client", type=click.IntRange(min=1), default=8, show_default=True,
              help="Open connections from one client address; more are answered 503 without taking a slot from others.")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds a request's headers and body may take to arrive, from its first byte; then 408.")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds an idle keep-alive connection stays open; also the longest any one read or write may take.")
def serve(bundle: Path, host: str, port: int, threads: int, max_body_bytes: int, max_texts: int, max_text_chars: int,
          max_header_bytes: int, max_connections: int, max_connections_per_client: int, request_timeout: float, idle_timeout: float):
    """Serve BUNDLE over HTTP: POST /predict {"texts": [...]}, GET /health, GET /metadata.

    Stops gracefully on Ctrl-C or SIGTERM: requests in flight are answered first.
    """
    from gendistill.runtime.classifier import Classifier
    from gendistill.runtime.server import PredictionServer, ServerLimits, serve_until_signalled

    classifier = Classifier.load(bundle, threads=threads)
    limits = ServerLimits(max_body_bytes=max_body_bytes, max_texts=max_texts, max_text_chars=max_text_chars,
                          max_header_bytes=max_header_bytes, max_connections=max_connections,
                          max_connections_per_client=max_connections_per_client, request_timeout_s=request_timeout,
                          socket_timeout_s=idle_timeout)
    try:
        server = PredictionServer((host, port), classifier, limits)
    except OSError as exc:
        raise GendistillError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --host or --port.") from None
    click.echo(f"Serving {bundle} on {server.url} (POST /predict, GET /health, GET /metadata); Ctrl-C or SIGTERM stops it.")
    serve_until_signalled(server)
    click.echo("Server stopped.")


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--texts", "texts_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Texts to measure with (lines, .csv or .jsonl); default: the bundle's golden.jsonl texts.")
@click.option("--text-column", default=None, help="Column or field of --texts holding the text (detected if omitted).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="onnxruntime threads.")
@click.option("--server-clients", type=click.IntRange(0, 64), default=4, show_default=True,
              help="Concurrent keep-alive clients against a server started for the benchmark; 0 skips the server.")
@click.option("--duration", type=click.FloatRange(0.1, 60.0), default=2.0, show_default=True, help="Seconds per measurement.")
def bench(bundle: Path, texts_path: Path | None, text_column: str | None, threads: int, server_clients: int, duration: float):
    """Measure BUNDLE on this machine: batch-1 latency, throughput at batch 1/32/256, and a server under load.

    Every text is read many times, so the runtime's cache of tokenized words soon knows all of their words: the
    figures of a server whose traffic has no new words. One more batch-1 figure empties that cache before each
    text, the cost of text whose every word is new (a new word costs sentencepiece's time for its characters once).
    """
    from gendistill.runtime.benchmark import format_table, run_benchmark

    texts = None if texts_path is None else [text for text, _ in read_texts(texts_path, text_column)]
    result = run_benchmark(bundle, texts, threads=threads, duration_s=duration, server_clients=server_clients)
    click.echo(format_table(result))


# --- input and output -------------------------------------------------------------------------------


def _table_writer(labels: list[str]):
    label_width = max(8, *map(len, labels))
    click.echo(f"{'label':<{label_width}}  {'prob':>5}  text")

    def write(text: str, probabilities: list[float]) -> str:
        best = max(range(len(labels)), key=probabilities.__getitem__)
        shown = " ".join(text.split())  # newlines and tabs would break the table
        if len(shown) > TABLE_TEXT_WIDTH:
            shown = shown[: TABLE_TEXT_WIDTH - 1] + "…"
        return f"{labels[best]:<{label_width}}  {probabilities[best]:5.3f}  {shown}"

    return write


def _jsonl_writer(labels: list[str]):
    def write(text: str, probabilities: list[float]) -> str:
        best = max(range(len(labels)), key=probabilities.__getitem__)
        record = {"text": text, "label": labels[best], "probabilities": {label: round(p, 6) for label, p in zip(labels, probabilities)}}
        return json_line(record)

    return write


def _csv_writer(labels: list[str]):
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    click.echo(line(["text", "label", *(f"prob_{label}" for label in labels)]))

    def write(text: str, probabilities: list[float]) -> str:
        best = max(range(len(labels)), key=probabilities.__getitem__)
        return line([text, labels[best], *(f"{p:.6f}" for p in probabilities)])

    return write


_OUTPUT_WRITERS = {"table": _table_writer, "jsonl": _jsonl_writer, "csv": _csv_writer}


def format_evaluation(classifier, texts: list[str], true_labels: list[str]) -> str:
    """Accuracy and a confusion matrix (rows: true label, columns: predicted label)."""
    if not texts:
        raise GendistillError("The input holds no labeled texts.")
    labels = classifier.labels
    unknown = sorted(set(true_labels) - set(labels))
    if unknown:
        raise GendistillError(f"Labels {unknown} in the input are not among the bundle's labels {labels}.")
    predicted = []
    for start in range(0, len(texts), CHUNK_SIZE):
        predicted += classifier.predict(texts[start : start + CHUNK_SIZE])
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for truth, guess in zip(true_labels, predicted):
        matrix[index[truth]][index[guess]] += 1
    correct = sum(matrix[i][i] for i in range(len(labels)))
    width = max(6, *map(len, labels), len(str(len(texts))))
    lines = [
        f"Accuracy: {correct / len(texts):.4f} ({correct}/{len(texts)})",
        "",
        "Confusion matrix (rows: true label, columns: predicted label)",
        " " * width + "  " + "  ".join(f"{label:>{width}}" for label in labels),
    ]
    for label, row in zip(labels, matrix):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{count:>{width}}" for count in row))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
