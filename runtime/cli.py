"""`gendistill predict`, `serve` and `bench`: thin click wrappers over runtime's plain functions.

Only these commands import click; the library (`import runtime`) never does.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from runtime.errors import GendistillError

CHUNK_SIZE = 4096
"""Texts classified and written per step, so a huge input streams instead of waiting for all of it."""
TABLE_TEXT_WIDTH = 70


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Texts to classify: one per line, or a .csv/.jsonl file with --text-column; '-' reads stdin.")
@click.option("--text-column", default="text", show_default=True, help="Column (CSV) or field (JSONL) holding the text.")
@click.option("--label-column", default="label", show_default=True, help="Column or field holding the true label (--evaluate).")
@click.option("--format", "output_format", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True,
              help="table: label, confidence, text; jsonl: text, label, probabilities per line; csv: one probability column per label.")
@click.option("--evaluate", is_flag=True, help="Compare with the labels in --input and print accuracy and a confusion matrix.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="onnxruntime threads.")
def predict(bundle: Path, texts: tuple[str, ...], input_path: Path | None, text_column: str, label_column: str,
            output_format: str, evaluate: bool, threads: int):
    """Classify TEXTs, the texts of --input, or lines from stdin, with the bundle at BUNDLE."""
    from runtime.classifier import Classifier

    if texts and input_path is not None:
        raise GendistillError("Give texts as arguments or with --input, not both.")
    if evaluate and input_path is None:
        raise GendistillError("--evaluate needs a labeled --input file (.csv or .jsonl with a label column).")
    classifier = Classifier.load(bundle, threads=threads)
    if evaluate:
        rows = read_rows(input_path, text_column, label_column)
        click.echo(format_evaluation(classifier, [text for text, _ in rows], [label for _, label in rows]))
        return
    if texts:
        all_texts = list(texts)
    elif input_path is not None:
        all_texts = [text for text, _ in read_rows(input_path, text_column)]
    elif sys.stdin.isatty():
        raise GendistillError("No texts: pass them as arguments, with --input FILE, or on stdin.")
    else:
        all_texts = _plain_lines(sys.stdin)
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
def serve(bundle: Path, host: str, port: int, threads: int, max_body_bytes: int, max_texts: int, max_text_chars: int):
    """Serve BUNDLE over HTTP: POST /predict {"texts": [...]}, GET /health, GET /metadata.

    Stops gracefully on Ctrl-C or SIGTERM: requests in flight are answered first.
    """
    from runtime.classifier import Classifier
    from runtime.server import PredictionServer, ServerLimits, serve_until_signalled

    classifier = Classifier.load(bundle, threads=threads)
    limits = ServerLimits(max_body_bytes=max_body_bytes, max_texts=max_texts, max_text_chars=max_text_chars)
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
@click.option("--text-column", default="text", show_default=True, help="Column or field of --texts holding the text.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="onnxruntime threads.")
@click.option("--server-clients", type=click.IntRange(0, 64), default=4, show_default=True,
              help="Concurrent keep-alive clients against a server started for the benchmark; 0 skips the server.")
@click.option("--duration", type=click.FloatRange(0.1, 60.0), default=2.0, show_default=True, help="Seconds per measurement.")
def bench(bundle: Path, texts_path: Path | None, text_column: str, threads: int, server_clients: int, duration: float):
    """Measure BUNDLE on this machine: batch-1 latency, throughput at batch 1/32/256, and a server under load."""
    from runtime.benchmark import format_table, run_benchmark

    texts = None if texts_path is None else [text for text, _ in read_rows(texts_path, text_column)]
    result = run_benchmark(bundle, texts, threads=threads, duration_s=duration, server_clients=server_clients)
    click.echo(format_table(result))


# --- input and output -------------------------------------------------------------------------------


def read_rows(path: Path, text_column: str, label_column: str | None = None) -> list[tuple[str, str | None]]:
    """(text, label) pairs from a .csv or .jsonl file, or (line, None) from any other file ('-': stdin).

    Plain files give one text per non-blank line. A label is read only when `label_column` is given.
    """
    if str(path) == "-":
        if label_column is not None:
            raise GendistillError("Labels cannot be read from stdin; pass a .csv or .jsonl --input file.")
        return [(line, None) for line in _plain_lines(sys.stdin)]
    if not path.is_file():
        raise GendistillError(f"Input file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl") and label_column is not None:
        raise GendistillError(f"{path} is a plain text file without labels; --evaluate needs a .csv or .jsonl file.")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            if suffix == ".csv":
                return _csv_rows(handle, path, text_column, label_column)
            if suffix == ".jsonl":
                return _jsonl_rows(handle, path, text_column, label_column)
            return [(line, None) for line in _plain_lines(handle)]
    except UnicodeDecodeError:
        raise GendistillError(f"{path} is not UTF-8 text.") from None


def _plain_lines(handle) -> list[str]:
    return [line.rstrip("\r\n") for line in handle if line.strip()]


def _csv_rows(handle, path: Path, text_column: str, label_column: str | None) -> list[tuple[str, str | None]]:
    reader = csv.DictReader(handle)
    columns = reader.fieldnames or []
    for column in (text_column, label_column):
        if column is not None and column not in columns:
            raise GendistillError(f"{path} has no column {column!r} (it has {', '.join(columns) or 'none'}); pick one with --text-column/--label-column.")
    try:
        return [(row[text_column] or "", None if label_column is None else row[label_column]) for row in reader]
    except csv.Error as exc:
        raise GendistillError(f"{path} is not valid CSV ({exc}).") from None


def _jsonl_rows(handle, path: Path, text_column: str, label_column: str | None) -> list[tuple[str, str | None]]:
    rows = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise GendistillError(f"Line {number} of {path} is not valid JSON.") from None
        if not isinstance(record, dict) or not isinstance(record.get(text_column), str):
            raise GendistillError(f"Line {number} of {path} has no string field {text_column!r}; pick the field with --text-column.")
        label = None
        if label_column is not None:
            if label_column not in record:
                raise GendistillError(f"Line {number} of {path} has no field {label_column!r}; pick the field with --label-column.")
            label = str(record[label_column])
        rows.append((record[text_column], label))
    return rows


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
        return json.dumps(record, ensure_ascii=False)

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
