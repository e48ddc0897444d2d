"""Bad input: one clear sentence, exit code 2, no traceback, nothing in the run directory damaged."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gendistill.runtime.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.output.strip()
    assert message.startswith("Error: ") and message.count("\n") == 0, message
    for fragment in fragments:
        assert fragment in message, message


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_missing_file(tmp_path):
    assert_clean_error(run("compress", tmp_path / "nope.csv", "--out", tmp_path / "run"), "does not exist")


def test_unreadable_encoding(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9 au lait,good\n".encode("latin-1"))
    assert_clean_error(run("compress", path, "--out", tmp_path / "run"), "not UTF-8")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK")
    assert_clean_error(run("compress", path, "--out", tmp_path / "run"), "unsupported extension")


def test_missing_named_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", "text,label", ["a b c,x", "d e f,y"])
    assert_clean_error(run("compress", path, "--out", tmp_path / "run", "--text-column", "body"), "no column 'body'", "--text-column")


def test_undetectable_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", "foo,bar", ["a b c,x", "d e f,y"])
    assert_clean_error(run("compress", path, "--out", tmp_path / "run"), "--text-column")


def test_ambiguous_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", "text,sentence,label", ["a,b,x", "c,d,y"])
    assert_clean_error(run("compress", path, "--out", tmp_path / "run"), "several possible texts columns")


def test_single_class(tmp_path):
    rows = [f"text number {i},same" for i in range(50)]
    path = write_csv(tmp_path / "d.csv", "text,label", rows)
    assert_clean_error(run("compress", path, "--out", tmp_path / "run"), "at least 2")


def test_single_class_is_named_before_splitting(tmp_path):
    # Two texts of one class: too few to split as well, but the one class is what to fix first.
    path = write_csv(tmp_path / "d.csv", "text,label", ["hello,a", "world,a"])
    assert_clean_error(run("compress", path, "--out", tmp_path / "run"), "1 class ('a')", "at least 2")


def test_class_too_small_for_per_class(tmp_path, toy_csv):
    assert_clean_error(run("compress", toy_csv, "--out", tmp_path / "run", "--per-class", 500, "--dev-size", 20, "--test-size", 20),
                       "fewer than --per-class 500")


def test_class_too_small_to_split(tmp_path):
    rows = [f"text number {i},big" for i in range(40)] + ["lonely text,small"]
    path = write_csv(tmp_path / "d.csv", "text,label", rows)
    assert_clean_error(run("compress", path, "--out", tmp_path / "run"), "too few")


def test_empty_texts_are_dropped_with_a_count(tmp_path, toy_rows):
    from gendistill.compressor.data import read_labeled

    path = write_csv(tmp_path / "d.csv", "text,label", [f"{t},{y}" for t, y in toy_rows[:20]] + [" ,sport", "   ,tech", ",business"])
    texts, labels, dropped = read_labeled(str(path))
    assert len(texts) == 20 and dropped["empty_text"] == 3


def test_unknown_model_offline(tmp_path, toy_csv, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run("compress", toy_csv, "--out", tmp_path / "run", "--teacher", "no-such-org/no-such-model", "--dev-size", 20, "--test-size", 20,
                 "--no-export")
    assert_clean_error(result, "no-such-org/no-such-model", "offline")
    assert not (tmp_path / "run").exists()  # refused before any stage ran


def test_out_dir_with_foreign_files_is_left_alone(tmp_path, toy_csv):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_clean_error(run("compress", toy_csv, "--out", out), "not a gendistill run")
    assert (out / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def test_out_dir_holding_a_run_on_other_data(tmp_path, toy_csv, student_run):
    """A run directory made from other data is refused before anything is touched."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(student_run, out)
    (out / "run.json").write_text("{}")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert_clean_error(run("compress", toy_csv, "--out", out, "--dev-size", 20, "--test-size", 20), "other settings", "--force")
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("flag, value", [
    ("--lambda", 1.5), ("--sampling-temperature", 0), ("--student-epochs", 0), ("--teacher-epochs", 0), ("--generator-epochs", 0),
    ("--teacher-lr", 0), ("--generator-lr", -1), ("--student-lr", 0), ("--synthesis-batch", 0), ("--synthesis-shard", 0),
    ("--top-p", 0), ("--top-k", -1), ("--max-new-tokens", 0), ("--synthetic", -1), ("--vocab-size", 10), ("--kd-temperature", 0),
    ("--per-class", 0), ("--dev-size", 0), ("--max-length", 2), ("--student-max-length", 2), ("--annotate-batch-size", 0), ("--calibration-size", 0),
    ("--export-opset", 3), ("--latency-threads", 0), ("--student-patience", 0),
])
def test_bad_option_values(tmp_path, toy_csv, flag, value):
    """Every setting is checked before any stage runs: one sentence naming the flag, nothing written."""
    assert_clean_error(run("compress", toy_csv, "--out", tmp_path / "run", flag, value), flag)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value", [("--student", "lstm"), ("--embeddings", "word2vec"), ("--teacher-labels", "fuzzy"), ("--quantize", "int4")])
def test_bad_choices(tmp_path, toy_csv, flag, value):
    result = run("compress", toy_csv, "--out", tmp_path / "run", flag, value)
    assert result.exit_code == 2 and "Traceback" not in result.output and flag in result.output and value in result.output
    assert not (tmp_path / "run").exists()


def test_datasets_directory_with_class_labels(tmp_path, toy_rows):
    """A `datasets` save_to_disk directory (DatasetDict, ClassLabel ints) reads as label strings."""
    import datasets
    from gendistill.compressor.data import read_labeled

    names = sorted({y for _, y in toy_rows})
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    train = datasets.Dataset.from_dict({"sentence": [t for t, _ in toy_rows], "label": [names.index(y) for _, y in toy_rows]}, features=features)
    datasets.DatasetDict({"train": train}).save_to_disk(str(tmp_path / "saved"))
    texts, labels, dropped = read_labeled(str(tmp_path / "saved"))
    assert texts == [t for t, _ in toy_rows] and labels == [y for _, y in toy_rows] and dropped == {}
