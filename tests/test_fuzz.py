"""Property-based tests (hypothesis): the table readers and `Classifier` on arbitrary input.

Whatever the bytes or the text, the answer is a result or one sentence (GendistillError), never a
traceback; a prediction follows golden.jsonl's rules: the ids `Classifier.encode` gives (tokenize all,
then truncate, as training does), probabilities that sum to 1, the same numbers alone or in a batch.
Example counts are modest so that the file runs in seconds; raise them locally with
HYPOTHESIS_FUZZ_EXAMPLES=1000 to search harder.
"""

from __future__ import annotations

import bz2
import csv
import io
import itertools
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st  # noqa: E402

from gendistill.runtime import Classifier, GendistillError  # noqa: E402
from gendistill.runtime.classifier import softmax  # noqa: E402
from gendistill.runtime.cli import main  # noqa: E402
from gendistill.runtime.preprocess import normalize  # noqa: E402
from gendistill.runtime.tables import read_table, read_texts  # noqa: E402

EXAMPLES = int(os.environ.get("HYPOTHESIS_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int):
    """Hypothesis settings for this file: no example database in the working tree, no deadline (a shared
    CI machine is slow at times), `examples` unless HYPOTHESIS_FUZZ_EXAMPLES asks for more."""
    return settings(max_examples=EXAMPLES or examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="gendistill-fuzz-") as folder:
        yield Path(folder)


def new_file(folder: Path, suffix: str, data: bytes) -> Path:
    path = folder / f"f{next(_counter)}{suffix}"
    path.write_bytes(bz2.compress(data) if suffix == ".csv.bz2" else data)
    return path


def assert_one_sentence(error: GendistillError) -> None:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, message


# --- strategies ------------------------------------------------------------------------------------

# Every code point, surrogates, controls and separators included (hypothesis leaves surrogates out by default).
ANY_CHAR = st.characters(exclude_categories=())
# Text without surrogates: what a UTF-8 file can hold.
FILE_CHAR = st.characters(exclude_categories=("Cs",))
# What table files are made of, so that random files are often nearly valid.
TABLE_PIECES = st.sampled_from([",", '"', '""', "\t", "\n", "\r\n", "\r", "{", "}", "[", "]", ":", "text", "label", "sentence", "x", " ",
                                '"text"', "\u2028", "\x85", "\x00", "\ufeff", "é", "😀", "\\", "1" * 5000, "[" * 3000])
TABLE_SUFFIXES = [".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".txt", ".csv.bz2"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]


@st.composite
def table_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["raw", "pieces", "text"]))
    if kind == "raw":
        return draw(st.binary(max_size=400))
    text = "".join(draw(st.lists(TABLE_PIECES, max_size=30))) if kind == "pieces" else draw(st.text(FILE_CHAR, max_size=200))
    if draw(st.booleans()):
        text = "text,label\n" + text
    return text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


# --- table readers: random files ---------------------------------------------------------------------


@fuzz(150)
@given(data=table_bytes(), suffix=st.sampled_from(TABLE_SUFFIXES))
@example(data=b'"\n"\n,', suffix=".csv")  # a header whose one name is a line break (found by a fresh clone's make test)
def test_random_files_give_rows_or_one_sentence(scratch, data, suffix):
    path = new_file(scratch, suffix, data)
    for read in (lambda: read_table(path), lambda: read_texts(path), lambda: read_texts(path, with_labels=True)):
        try:
            result = read()
        except GendistillError as error:
            assert_one_sentence(error)
            continue
        assert isinstance(result, list)
        for item in result:
            if isinstance(item, dict):
                continue
            text, label = item
            assert isinstance(text, str) and (label is None or isinstance(label, str))


@fuzz(40)
@given(data=table_bytes(), suffix=st.sampled_from(TABLE_SUFFIXES))
def test_predict_input_random_files_exit_0_or_2(scratch, bundle, data, suffix):
    """`gendistill predict --input FILE` end to end: output or `Error: ...`, exit 2, never a traceback."""
    path = new_file(scratch, suffix, data)
    result = CliRunner().invoke(main, ["predict", str(bundle), "--input", str(path), "--format", "jsonl"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        message = result.output.strip()
        assert message.startswith("Error: ") and "\n" not in message and "Traceback" not in message, message


# --- table readers: what is written is read back -------------------------------------------------------

# Characters that break naive readers (line separators str.splitlines knows, quotes, NUL, BOM) drawn
# often, among any others.
TRICKY = st.sampled_from([",", '"', "\t", "\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x00", "\ufeff", " "])
TEXTS = st.lists(st.one_of(TRICKY, st.text(FILE_CHAR, max_size=8)), max_size=10).map("".join)
LABELS = st.text(FILE_CHAR, min_size=1, max_size=10).map(str.strip).filter(bool)
ROWS = st.lists(st.tuples(TEXTS, LABELS), min_size=1, max_size=8)


@fuzz(120)
@given(rows=ROWS, suffix=st.sampled_from([".csv", ".tsv", ".csv.bz2"]))
def test_csv_round_trip(scratch, rows, suffix):
    """Quotes, delimiters, \\r\\n, U+2028, NUL: what csv.writer writes comes back exactly."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    path = new_file(scratch, suffix, buffer.getvalue().encode("utf-8"))
    assert read_texts(path, with_labels=True) == rows


@fuzz(120)
@given(rows=ROWS, suffix=st.sampled_from([".jsonl", ".ndjson", ".json"]), ascii_only=st.booleans(), crlf=st.booleans())
def test_json_round_trip(scratch, rows, suffix, ascii_only, crlf):
    """json.dumps(ensure_ascii=False) writes U+2028 and U+0085 raw inside strings: they are not line breaks."""
    records = [{"text": text, "label": label} for text, label in rows]
    if suffix == ".json":
        content = json.dumps(records, ensure_ascii=ascii_only)
    else:
        content = ("\r\n" if crlf else "\n").join(json.dumps(record, ensure_ascii=ascii_only) for record in records) + "\n"
    path = new_file(scratch, suffix, content.encode("utf-8"))
    assert read_texts(path, with_labels=True) == rows


@fuzz(120)
@given(texts=st.lists(TEXTS.filter(lambda t: t.strip() and not {"\n", "\r"} & set(t)), min_size=1, max_size=8), bom=st.booleans(),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_plain_text_round_trip(scratch, texts, bom, newline):
    """One text per line, split at \\n and \\r\\n only (as stdin is): form feeds and U+2028 stay in the text."""
    assume(bom or not texts[0].startswith("\ufeff"))  # a U+FEFF that starts the file is its byte-order mark
    path = new_file(scratch, ".txt", (("\ufeff" if bom else "") + newline.join(texts) + newline).encode("utf-8"))
    assert [text for text, _ in read_texts(path)] == texts
    # ... and `predict` reads the same texts from the file and from stdin.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        from gendistill.runtime.tables import plain_lines

        assert plain_lines(io.StringIO(handle.read())) == texts


# --- table readers: inputs fuzzing rarely reaches ----------------------------------------------------------


@pytest.mark.parametrize("size", [131_072, 131_073, 400_000])
def test_huge_quoted_field_is_read(tmp_path, size):
    """csv's field limit (131072 characters) must not refuse a long document."""
    text = ('a "quoted", long\r\ntext ' * (size // 20 + 1))[:size]
    path = tmp_path / "big.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["text", "label"], [text, "x"], ["short", "y"]])
    assert read_texts(path, with_labels=True) == [(text, "x"), ("short", "y")]


def test_unclosed_quote_is_refused_not_swallowed(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\nfine,x\n"never closed,y\nthe rest,z\n' + "more,w\n" * 20_000, encoding="utf-8")
    with pytest.raises(GendistillError, match="from line 3 on") as caught:
        read_texts(path, with_labels=True)
    assert_one_sentence(caught.value)


@pytest.mark.parametrize("name, content, fragment", [
    ("deep.json", "[" * 100_000, "cannot be read"),
    ("deep.jsonl", "[" * 100_000 + "\n", "line 1"),
    ("bigint.json", '[{"text": ' + "1" * 5000 + "}]", "cannot be read"),
    ("bigint.jsonl", '{"text": "ok"}\n{"text": ' + "1" * 5000 + "}\n", "line 2"),
    ("blank-header.csv", "\n\ntext,label\na,b\n", "first line"),
])
def test_json_and_csv_edge_cases(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GendistillError, match=fragment) as caught:
        read_texts(path)
    assert_one_sentence(caught.value)


@pytest.mark.parametrize("data", [b"BZh91AY&SY not really", bz2.compress(b"text,label\na,b\n")[:-4], b""])
def test_damaged_bz2(tmp_path, data):
    path = tmp_path / "d.csv.bz2"
    path.write_bytes(data)
    try:
        rows = read_texts(path)
    except GendistillError as error:
        assert_one_sentence(error)
    else:
        assert rows == []  # an empty file is an empty table


def test_line_breaks_inside_quoted_fields_are_kept(tmp_path):
    """They used to be dropped, gluing words together ("no\\ncliche" read as "nocliche")."""
    path = tmp_path / "d.csv"
    path.write_bytes(b'text,label\r\n"no\r\ncliche",x\r\n"two\nlines",y\r\nunquoted\xe2\x80\xa8sep,z\r\n')
    assert read_texts(path, with_labels=True) == [("no\r\ncliche", "x"), ("two\nlines", "y"), ("unquoted\u2028sep", "z")]


# --- Classifier ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(bundle) -> Classifier:
    return Classifier.load(bundle)


@pytest.fixture(scope="module")
def small_batches(bundle) -> Classifier:
    return Classifier.load(bundle, batch_size=3, verify=False)


def as_javascript_sees_it(text: str) -> str:
    """A str with surrogates as JavaScript (UTF-16) reads it: pairs joined, lone ones U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def full_tokenization(classifier: Classifier, text: str) -> list[int]:
    """What training does: normalize, tokenize everything, then truncate."""
    spec = classifier.inputs.spec
    ids = classifier.inputs.tokenizer.encode(normalize(as_javascript_sees_it(text), spec.lowercase, spec.digits_to_zero), out_type=int)
    return ids[: spec.max_length]


WORDS = st.sampled_from(["match", "goal", "Shares", "bank", "phone", "2024", "the", "café", "😀", "\u200b", "\ud800", "\udc00", "\x00", "\x1b[31m",
                         "\u2028", "ﬁ", "İ", "e\u0301", "▁", "<unk>", " ", "\t", "\n"])
SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t", "\u3000", ""])
# Long texts built from pieces: past max_length words, where the word-by-word tokenizer stops splitting.
LONG_TEXTS = st.builds(lambda words, separator, repeat: separator.join(words) * repeat,
                       st.lists(WORDS, min_size=1, max_size=12), SEPARATORS, st.integers(1, 2000))
ANY_TEXT = st.one_of(st.text(ANY_CHAR, max_size=200), LONG_TEXTS, st.text(ANY_CHAR, min_size=500, max_size=3000))


@fuzz(120)
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=6))
def test_predictions_follow_the_golden_rules(classifier, small_batches, texts):
    labels = classifier.predict(texts)
    probabilities = classifier.predict_proba(texts)
    ids = classifier.encode(texts)
    spec = classifier.inputs.spec
    vocabulary = classifier.inputs.tokenizer.get_piece_size()

    assert probabilities.shape == (len(texts), len(classifier.labels)) and probabilities.dtype == np.float32
    assert np.isfinite(probabilities).all() and (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert labels == [classifier.labels[i] for i in probabilities.argmax(axis=1)]
    for row, text in enumerate(texts):
        one_ids = classifier.encode(text)
        assert ids[row] == one_ids == full_tokenization(classifier, text)
        assert len(one_ids) <= spec.max_length and all(0 <= i < vocabulary for i in one_ids)
        # golden.jsonl's "probabilities": softmax of the model run on this text alone, padded to min_length.
        padded = classifier.inputs.pad([one_ids])
        # A lone text skips the list of ids: the same padded input, built from the word cache's bytes.
        np.testing.assert_array_equal(classifier._readable(classifier.inputs.one_batch, text), padded)
        alone = softmax(classifier._run(padded)[0])
        np.testing.assert_allclose(classifier.predict_proba(text), alone, atol=1e-6)
        np.testing.assert_allclose(probabilities[row], alone, atol=1e-5)
        assert classifier.predict(text) == classifier.labels[int(alone.argmax())]
    np.testing.assert_allclose(small_batches.predict_proba(texts), probabilities, atol=1e-5)


@fuzz(60)
@given(value=st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=5), st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
                       st.lists(st.one_of(st.text(max_size=5), st.integers(), st.none(), st.binary(max_size=3)), max_size=4)))
def test_non_texts_get_one_sentence(classifier, value):
    is_text_list = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    for method in (classifier.predict, classifier.predict_proba, classifier.encode):
        if is_text_list:
            method(value)
            continue
        with pytest.raises(GendistillError) as caught:
            method(value)
        assert_one_sentence(caught.value)


def test_lone_surrogates_are_read_as_a_browser_reads_them(classifier):
    """JSON "\\ud800" decodes to a lone surrogate, which has no UTF-8 form; it used to crash sentencepiece
    (UnicodeEncodeError, a 500 from the server). It now counts as U+FFFD, as TextEncoder makes it."""
    for text in ("goal \ud800", "\udc00", "shares \ud83d\ude00 bank", "x" * 600 + " \udfff " + "goal " * 200):
        assert classifier.encode(text) == classifier.encode(as_javascript_sees_it(text))
        np.testing.assert_allclose(classifier.predict_proba(text), classifier.predict_proba(as_javascript_sees_it(text)), atol=1e-6)
    assert classifier.encode("\ud83d\ude00") == classifier.encode("😀")  # a pair is the character it encodes
