"""The runtime library and the `predict` command on a tiny real bundle (exported from the `student_run` fixture)."""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gendistill.runtime.cli import main
from gendistill.runtime import Classifier, GendistillError
from gendistill.runtime.preprocess import InputSpec, StudentInput, normalize


@pytest.fixture(scope="module")
def classifier(bundle) -> Classifier:
    return Classifier.load(bundle)


@pytest.fixture
def bundle_copy(bundle, tmp_path) -> Path:
    """A private copy for tests that damage a bundle."""
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- library ---------------------------------------------------------------------------------------


def test_round_trip(bundle, classifier):
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert classifier.labels == json.loads((bundle / "labels.json").read_text()) == manifest["labels"]

    texts = ["The striker scored a late goal", "Shares fell as the bank cut its profit forecast", "A new phone chip for users"]
    label = classifier.predict(texts[0])
    assert isinstance(label, str) and label in classifier.labels
    labels = classifier.predict(texts)
    assert isinstance(labels, list) and labels[0] == label and set(labels) <= set(classifier.labels)
    assert classifier.predict(tuple(texts)) == labels

    one = classifier.predict_proba(texts[0])
    many = classifier.predict_proba(texts)
    assert one.shape == (len(classifier.labels),) and many.shape == (len(texts), len(classifier.labels))
    assert one.dtype == many.dtype == np.float32
    np.testing.assert_allclose(many.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(many[0], one, atol=1e-6)
    assert [classifier.labels[i] for i in many.argmax(axis=1)] == labels


def test_test_split_accuracy_matches_the_export(bundle, classifier, student_run):
    rows = read_jsonl(student_run / "data" / "test.jsonl")
    predicted = classifier.predict([row["text"] for row in rows])
    accuracy = np.mean([guess == row["label"] for guess, row in zip(predicted, rows)])
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert accuracy == pytest.approx(manifest["metrics"]["int8_test_accuracy"])


def test_golden_ids_and_probabilities_are_reproduced(bundle, classifier):
    golden = read_jsonl(bundle / "golden.jsonl")
    assert len(golden) > 50  # edge cases and long texts are in there, not just a few plain strings
    texts = [row["text"] for row in golden]
    expected = np.array([row["probabilities"] for row in golden], dtype=np.float32)

    assert classifier.encode(texts) == [row["ids"] for row in golden]
    for text, row in zip(texts, golden):
        assert classifier.encode(text) == row["ids"], text
    # Batched (sorted by length, padded together) and one by one must both give the golden numbers.
    np.testing.assert_allclose(classifier.predict_proba(texts), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.stack([classifier.predict_proba(t) for t in texts]), expected, atol=1e-5, rtol=0)


def test_batching_restores_order_for_any_batch_size(bundle, classifier):
    texts = [row["text"] for row in read_jsonl(bundle / "golden.jsonl")]
    random.Random(0).shuffle(texts)
    reference = np.stack([classifier.predict_proba(t) for t in texts])
    small_batches = Classifier.load(bundle, batch_size=7, verify=False)
    np.testing.assert_allclose(small_batches.predict_proba(texts), reference, atol=1e-6)
    np.testing.assert_allclose(classifier.predict_proba(texts), reference, atol=1e-6)


def test_batches_bound_texts_and_padded_ids(classifier):
    """Length-sorted texts are cut so no run exceeds batch_size texts or its padded-id budget."""
    from gendistill.runtime.classifier import BATCH_TOKENS

    lengths = sorted([3] * 500 + [40] * 300 + [128] * 100)
    batches = list(classifier._batches(list(range(len(lengths))), lengths))
    assert [row for batch in batches for row in batch] == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= classifier.batch_size
        assert len(batch) == 1 or len(batch) * max(lengths[batch[-1]], classifier.inputs.spec.min_length) <= classifier.batch_size * BATCH_TOKENS


def test_one_megabyte_text(classifier):
    words = ["match", "Shares", "phone", "the", "GOAL", "bank", "café", "😀", "2024", "data"]
    rng = random.Random(1)
    text = " ".join(rng.choice(words) for _ in range(250_000))[:1_000_000]
    assert len(text) == 1_000_000
    assert classifier.predict(text) in classifier.labels
    assert classifier.predict_proba([text, "short"]).shape == (2, len(classifier.labels))
    assert classifier.encode(text) == full_tokenization(classifier, text)
    for unbroken in ("x" * 1_000_000, "é" * 1_000_000):  # no space to cut at: tokenized in full
        assert classifier.predict(unbroken) in classifier.labels


def full_tokenization(classifier: Classifier, text: str) -> list[int]:
    """What training does: normalize, tokenize everything, then truncate."""
    spec = classifier.inputs.spec
    ids = classifier.inputs.tokenizer.encode(normalize(text, spec.lowercase, spec.digits_to_zero), out_type=int)
    return ids[: spec.max_length]


def test_word_by_word_ids_are_sentencepiece_ids(classifier):
    """Tokenizing word by word through the cache (long texts cut after max_length words) must give
    exactly the ids of tokenizing each whole text."""
    assert classifier.inputs.by_word  # sentencepiece's defaults: split_by_whitespace, nmt_nfkc
    rng = random.Random(2)
    pieces = list("abcdefghijklmnopqrstuvwxyz0123456789 .,!?'") + [
        " ", "  ", "\t", "\n", "\u3000", "\u00a0", "\u200b", "Σ", "ΣΑΣ ", "İ", "ß", "ﬁ", "é", "e\u0301", "😀", "👍🏽",
        "the ", "match ", "Shares ", "<unk> ", "▁", "xxxxxxxx", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\x00", "\u2028",
    ]
    ascii_pieces = [piece for piece in pieces if piece.isascii()]  # pure-ASCII texts take a shortcut to find odd spaces
    for choices in [pieces] * 150 + [ascii_pieces] * 50:
        length = rng.choice([10, 100, 1_000, 3_000, 20_000])
        text = "".join(rng.choice(choices) for _ in range(length))
        assert classifier.encode(text) == full_tokenization(classifier, text)


def test_missing_bundle(tmp_path):
    with pytest.raises(GendistillError, match="does not exist"):
        Classifier.load(tmp_path / "nowhere")
    with pytest.raises(GendistillError, match="not a gendistill bundle"):
        Classifier.load(tmp_path)


def test_changed_byte_is_refused(bundle_copy):
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(GendistillError, match="SHA-256"):
        Classifier.load(bundle_copy)


def test_verify_false_skips_hashes(bundle_copy):
    golden = bundle_copy / "golden.jsonl"
    golden.write_text(golden.read_text() + "\n")
    with pytest.raises(GendistillError, match="SHA-256"):
        Classifier.load(bundle_copy)
    assert Classifier.load(bundle_copy, verify=False).predict("goal") is not None


def test_missing_file_is_refused(bundle_copy):
    (bundle_copy / "tokenizer.model").unlink()
    with pytest.raises(GendistillError, match="missing"):
        Classifier.load(bundle_copy)


def test_newer_schema_is_refused(bundle_copy):
    manifest_path = bundle_copy / "bundle.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["schema_version"] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(GendistillError, match="newer"):
        Classifier.load(bundle_copy)


def test_manifest_without_preprocessing_is_refused(bundle_copy):
    manifest_path = bundle_copy / "bundle.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["preprocessing"]["pad_id"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(GendistillError, match="pad_id"):
        Classifier.load(bundle_copy)


@pytest.mark.parametrize(
    "bad_input, message",
    [
        ([], "empty"),
        (["fine", 3], "Text 1 is a int"),
        (["fine", None], "Text 1 is a NoneType"),
        ([b"bytes"], "Text 0 is a bytes"),
        (42, "not int"),
        (None, "not NoneType"),
        (b"bytes", "not bytes"),
        ({"text": "a dict"}, "not dict"),
    ],
)
def test_bad_input_is_refused(classifier, bad_input, message):
    for method in (classifier.predict, classifier.predict_proba, classifier.encode):
        with pytest.raises(GendistillError, match=message):
            method(bad_input)


def test_bad_settings_are_refused(bundle):
    with pytest.raises(GendistillError, match="threads"):
        Classifier.load(bundle, threads=0)
    with pytest.raises(GendistillError, match="batch_size"):
        Classifier.load(bundle, batch_size=0)


def test_empty_and_whitespace_texts_are_classified(classifier):
    probabilities = classifier.predict_proba(["", " ", "\n\t"])
    np.testing.assert_allclose(probabilities[1:], np.repeat(probabilities[:1], 2, axis=0), atol=1e-6)


# --- command line ----------------------------------------------------------------------------------


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(main, [str(arg) for arg in args], input=input)


def test_predict_table(bundle, classifier):
    result = invoke("predict", bundle, "The striker scored a goal", "Shares fell at the bank")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["label", "prob", "text"]
    assert lines[1].split()[0] == classifier.predict("The striker scored a goal")
    assert lines[2].endswith("Shares fell at the bank")


def test_predict_jsonl(bundle, classifier):
    # \x85, \u2028 and \u2029 break lines for str.splitlines: each record must stay one line all the same
    texts = ["a new phone", "the bank's profit, 2024", 'quotes "inside"\nand a newline', "next\x85line \u2028 and \u2029 para"]
    result = invoke("predict", bundle, "--format", "jsonl", *texts)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [record["text"] for record in records] == texts
    assert [record["label"] for record in records] == classifier.predict(texts)
    expected = classifier.predict_proba(texts)
    for record, row in zip(records, expected):
        assert list(record["probabilities"]) == classifier.labels
        np.testing.assert_allclose(list(record["probabilities"].values()), row, atol=1e-6)


def test_predict_csv_from_stdin(bundle, classifier):
    texts = ["goal, goal, goal", "shares and profit", "users online"]
    result = invoke("predict", bundle, "--format", "csv", input="\n".join(texts) + "\n\n")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [row["text"] for row in rows] == texts  # the blank line is not a text
    assert [row["label"] for row in rows] == classifier.predict(texts)
    assert list(rows[0]) == ["text", "label", *(f"prob_{label}" for label in classifier.labels)]
    assert float(rows[0][f"prob_{rows[0]['label']}"]) == pytest.approx(classifier.predict_proba(texts[0]).max(), abs=1e-6)


def test_predict_input_files(bundle, classifier, tmp_path):
    texts = ["The coach praised the team", "Investors sold shares", "Chip makers and software"]
    plain = tmp_path / "texts.txt"
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    table = tmp_path / "texts.csv"
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "body"])
        writer.writerows(enumerate(texts))
    lines = tmp_path / "texts.jsonl"
    lines.write_text("".join(json.dumps({"content": t}) + "\n" for t in texts), encoding="utf-8")
    tsv = tmp_path / "texts.tsv"  # the same reader as `compress`: a header line is a header, not a text
    tsv.write_text("text\tlabel\n" + "".join(f"{t}\tsport\n" for t in texts), encoding="utf-8")
    expected = classifier.predict(texts)
    for args in (["--input", plain], ["--input", table, "--text-column", "body"], ["--input", lines, "--text-column", "content"],
                 ["--input", lines], ["--input", tsv]):
        result = invoke("predict", bundle, "--format", "jsonl", *args)
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["label"] for line in result.output.splitlines()] == expected


def test_predict_evaluate(bundle, classifier, student_run):
    test_file = student_run / "data" / "test.jsonl"
    rows = read_jsonl(test_file)
    result = invoke("predict", bundle, "--input", test_file, "--evaluate")
    assert result.exit_code == 0, result.output
    predicted = classifier.predict([row["text"] for row in rows])
    correct = sum(guess == row["label"] for guess, row in zip(predicted, rows))
    assert f"Accuracy: {correct / len(rows):.4f} ({correct}/{len(rows)})" in result.output
    matrix_lines = result.output.splitlines()[-len(classifier.labels):]
    counts = [[int(n) for n in line.split()[1:]] for line in matrix_lines]
    assert [line.split()[0] for line in matrix_lines] == classifier.labels
    assert sum(map(sum, counts)) == len(rows) and sum(counts[i][i] for i in range(len(counts))) == correct


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "{missing}", "text"], "does not exist"),
        (["predict", "{bundle}", "--evaluate"], "--evaluate needs"),
        (["predict", "{bundle}", "--input", "{tmp}/none.txt"], "does not exist"),
        (["predict", "{bundle}", "--input", "{tmp}/t.csv", "--text-column", "body"], "no column 'body'"),
        (["predict", "{bundle}", "--input", "{tmp}/t.txt", "--evaluate"], "without labels"),
        (["predict", "{bundle}", "--input", "{tmp}/t.txt", "some text"], "not both"),
        (["predict", "{bundle}", "--input", "{tmp}/wrong.csv", "--evaluate"], "not among the bundle's labels"),
    ],
)
def test_predict_errors_exit_2(bundle, tmp_path, args, message):
    (tmp_path / "t.csv").write_text("text,label\ngoal,sport\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("goal\n", encoding="utf-8")
    (tmp_path / "wrong.csv").write_text("text,label\ngoal,weather\n", encoding="utf-8")
    filled = [arg.format(bundle=bundle, missing=tmp_path / "missing", tmp=tmp_path) for arg in args]
    result = invoke(*filled)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_word_cache_is_used_and_bounded(bundle, monkeypatch):
    """Words are cached as they are read, never past MAX_CACHED_WORDS, and a full cache changes no id."""
    from gendistill.runtime import preprocess

    monkeypatch.setattr(preprocess, "MAX_CACHED_WORDS", 20)
    classifier = Classifier.load(bundle)
    assert classifier.inputs.word_ids == {}  # the load-time probe leaves nothing behind
    texts = ["The striker scored a late goal", "Shares fell as the bank cut its profit forecast", "A new phone chip for users"] * 3
    texts += [" ".join(f"word{n}x" for n in range(start, start + 15)) for start in range(0, 60, 15)]
    for text in texts:
        assert classifier.encode(text) == full_tokenization(classifier, text)
    assert 0 < len(classifier.inputs.word_ids) <= 20 + 15  # filled by whole texts: at most one text's words past the limit
    assert "goal" in classifier.inputs.word_ids


@pytest.mark.parametrize("option", [{"remove_extra_whitespaces": False}, {"treat_whitespace_as_suffix": True}, {"split_by_whitespace": False}])
def test_tokenizers_that_join_words_are_used_whole(tmp_path, option):
    """A sentencepiece model whose ids depend on more than one word at a time must not go through the
    word cache: it is detected at load and every text is tokenized whole."""
    import sentencepiece

    texts = ["the match ended  in a draw", "shares fell as the bank cut its forecast", "a new phone for the new year"] * 50
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, model_type="bpe", vocab_size=120,
                                             hard_vocab_limit=False, minloglevel=2, **option)
    inputs = StudentInput(sentencepiece.SentencePieceProcessor(model_proto=model.getvalue()), InputSpec(max_length=64))
    assert not inputs.by_word
    for text in texts[:3] + ["the  match", "  the bank ", "phone\tyear\n"]:
        assert inputs.encode_one(text) == inputs.tokenizer.encode(text, out_type=int)[:64]
