"""The one table reader: `gendistill compress DATA`, `--dev/--test` files and `gendistill predict --input`.

Tables are .csv, .tsv, .csv.bz2, .jsonl/.ndjson (one object per line) and .json (an array of objects),
read as UTF-8 (a byte-order mark is dropped). A .txt file is a table when its first line holds a tab (TSV)
for `read_table`; `read_texts` reads any other file as one text per non-blank line.

Lines end at \n, \r\n or \r only, as on stdin: U+2028, form feeds and the like are characters of a
text (JSON writes U+2028 raw inside strings). CSV is parsed strictly, so an unclosed quote is refused
instead of swallowing the rest of the file as one text; quoted fields keep their line breaks and may be
of any length.
Standard library only: part of the core install.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from gendistill.runtime.errors import GendistillError

TABLE_SUFFIXES = (".csv", ".tsv", ".csv.bz2", ".jsonl", ".ndjson", ".json")
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "body", "utterance", "question")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "sentiment", "topic", "intent")


def suffix_of(path: Path) -> str:
    return ("".join(path.suffixes[-2:]) if path.suffix == ".bz2" else path.suffix).lower()


def is_table(path: Path) -> bool:
    return suffix_of(path) in TABLE_SUFFIXES


def read_text(path: Path, newline: str | None = None) -> str:
    """The file's text; `newline` as for `open` ("" keeps line endings for the csv module)."""
    try:
        if suffix_of(path) == ".csv.bz2":
            import bz2

            with bz2.open(path, "rt", encoding="utf-8-sig", newline=newline) as handle:
                return handle.read()
        with open(path, encoding="utf-8-sig", newline=newline) as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise GendistillError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded); re-save it as UTF-8.") from None
    except (OSError, EOFError) as exc:  # unreadable, or a damaged .bz2 (OSError or EOFError, by where the damage is)
        raise GendistillError(f"{path} cannot be read ({exc}); check the file, or re-create it.") from None


def read_table(path: str | Path) -> list[dict]:
    """Rows of a table file as dicts (column -> value)."""
    path = Path(path)
    if not path.is_file():
        raise GendistillError(f"{path} does not exist or is not a file; give a .csv, .tsv or .jsonl file.")
    suffix = suffix_of(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        text = read_text(path)
        if suffix == ".json" and text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise GendistillError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix it or convert it to JSONL.") from None
            except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; arrays nested thousands deep
                raise GendistillError(f"{path} holds JSON that cannot be read ({exc}); fix it or convert it to JSONL.") from None
        else:
            rows = []
            for number, line in enumerate(text.split("\n"), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except (ValueError, RecursionError):  # also an integer of over 4300 digits, or nesting thousands deep
                        raise GendistillError(f"{path} line {number} is not valid JSON; fix that line or convert the file to CSV.") from None
        if not all(isinstance(r, dict) for r in rows):
            raise GendistillError(f"{path} must hold one JSON object per line, like {{\"text\": ..., \"label\": ...}}.")
        return rows
    if suffix in (".csv", ".tsv", ".txt", ".csv.bz2"):
        text = read_text(path, newline="")
        first_line = text.split("\n", 1)[0].split("\r", 1)[0]
        delimiter = "\t" if suffix == ".tsv" or (suffix == ".txt" and "\t" in first_line) else ","
        return _read_csv(path, text, delimiter)
    raise GendistillError(f"{path} has an unsupported extension {suffix!r}; give a .csv, .tsv or .jsonl file, or a `datasets` directory.")


def _read_csv(path: Path, text: str, delimiter: str) -> list[dict]:
    # No field can be longer than the text, and the text is in memory already, so csv's limit (131072
    # characters, a guard against unbounded memory) only refuses long documents here. It is process-wide
    # state: raised, never lowered, so that threads reading at once cannot undo each other's raise.
    if len(text) > csv.field_size_limit():
        csv.field_size_limit(len(text))
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows, row_start = [], 1
    try:
        if reader.fieldnames == [] and text.strip():
            raise GendistillError(f"The first line of {path} is blank; it must be the header (the column names).")
        row_start = reader.line_num + 1
        for row in reader:
            rows.append(row)
            row_start = reader.line_num + 1
    except csv.Error as exc:
        raise GendistillError(
            f"{path} is not valid CSV/TSV from line {row_start} on ({exc}); a field that starts with a quote must end with one, and quotes inside it are doubled."
        ) from None
    return rows


def pick_column(columns: list[str], given: str | None, candidates: tuple[str, ...], kind: str, flag: str, source) -> str:
    """The column holding `kind`: `given` if it exists, else the one column named like a candidate."""
    # Names quoted (repr): a header may hold a line break or nothing, and the message must stay one readable line.
    names = ", ".join(map(repr, columns)) or "none"
    if given is not None:
        if given not in columns:
            raise GendistillError(f"{source} has no column {given!r} (columns: {names}); fix {flag}.")
        return given
    found = [c for c in columns if isinstance(c, str) and c.lower() in candidates]
    if len(found) == 1:
        return found[0]
    if not found:
        raise GendistillError(f"Cannot tell which column of {source} holds the {kind} (columns: {names}); name it with {flag}.")
    raise GendistillError(f"{source} has several possible {kind} columns ({', '.join(found)}); choose one with {flag}.")


def read_texts(path: str | Path, text_column: str | None = None, label_column: str | None = None,
               with_labels: bool = False) -> list[tuple[str, str | None]]:
    """(text, label) pairs from a table, or (line, None) from any other file ('-': stdin).

    Columns are detected by name (text, sentence, ...; label, category, ...) unless given. Labels are
    read only `with_labels`, and then a file without a label column is refused.
    """
    if str(path) == "-":
        if with_labels:
            raise GendistillError("Labels cannot be read from stdin; pass a .csv, .tsv or .jsonl file.")
        return [(line, None) for line in plain_lines(sys.stdin)]
    path = Path(path)
    if not path.is_file():
        raise GendistillError(f"Input file {path} does not exist.")
    if not is_table(path):
        if with_labels:
            raise GendistillError(f"{path} is a plain text file without labels; give a .csv, .tsv or .jsonl file with a label column.")
        return [(line, None) for line in plain_lines(read_text(path).split("\n"))]
    rows = read_table(path)
    if not rows:
        return []
    columns = list(rows[0].keys())
    text_key = pick_column(columns, text_column, TEXT_COLUMNS, "texts", "--text-column", path)
    label_key = pick_column(columns, label_column, LABEL_COLUMNS, "labels", "--label-column", path) if with_labels else None
    out = []
    for number, row in enumerate(rows, 1):
        text = row.get(text_key)
        if not isinstance(text, str):
            if text is None and suffix_of(path) not in (".jsonl", ".ndjson", ".json"):
                text = ""  # a short CSV row
            else:
                raise GendistillError(f"Row {number} of {path} has no string field {text_key!r}; pick the field with --text-column.")
        label = None
        if label_key is not None:
            if row.get(label_key) is None:
                raise GendistillError(f"Row {number} of {path} has no {label_key!r}; every row needs a label.")
            label = str(row[label_key]).strip()
        out.append((text, label))
    return out


def plain_lines(lines) -> list[str]:
    return [line.rstrip("\r\n") for line in lines if line.strip()]
