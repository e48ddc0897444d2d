"""Overlapping train/dev/test texts: refused in one sentence, or dropped from dev/test with --drop-overlap.

"The same text" is one rule everywhere (`compressor.data.text_key`: whitespace collapsed, lowercased):
DATA's dedupe, this check and the synthetic-text filter.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gendistill.compressor.data import DataSettings, read_labeled, run_data, text_key
from gendistill.runtime import GendistillError
from gendistill.runtime.cli import main


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def variant(text: str) -> str:
    """The same text after text_key: other case, other whitespace."""
    return "  " + text.upper().replace(" ", " \t\n ") + " "


def read_split(run_dir: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "data" / f"{split}.jsonl").read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture
def files(tmp_path, toy_rows):
    """DATA (120 rows) and disjoint dev/test files (30 rows each) made from the toy corpus."""
    data, dev, test = toy_rows[:120], toy_rows[120:150], toy_rows[150:]
    return {"rows": (data, dev, test), "data": write_csv(tmp_path / "data.csv", data), "dir": tmp_path}


def settings(files, **values) -> DataSettings:
    return DataSettings(source=str(files["data"]), dev_size=10, test_size=10, **values)


def test_one_normalisation_for_data_dedupe_overlap_and_synthesis():
    from gendistill.compressor import synthesize

    assert synthesize.text_key is text_key
    for text, key in [("Great movie", "great movie"), ("  great\tMOVIE \n", "great movie"), ("a\u00a0b\u2028c", "a b c"), ("", "")]:
        assert text_key(text) == key


def test_disjoint_files_are_accepted_and_counted(files):
    data, dev, test = files["rows"]
    metrics = run_data(settings(files, dev=str(write_csv(files["dir"] / "dev.csv", dev)), test=str(write_csv(files["dir"] / "test.csv", test))),
                       files["dir"] / "run")
    assert metrics["overlap_dropped"] == {"test": 0, "dev": 0}
    assert metrics["sizes"]["test"] == len(test) and metrics["sizes"]["dev"] == len(dev)


@pytest.mark.parametrize("flag", ["test", "dev"])
def test_file_overlapping_data_is_refused(files, flag):
    data, dev, test = files["rows"]
    own = test if flag == "test" else dev
    shared = [(variant(text), label) for text, label in data[:3]]
    path = write_csv(files["dir"] / f"{flag}.csv", own[:5] + shared + own[5:])
    with pytest.raises(GendistillError) as caught:
        run_data(settings(files, **{flag: str(path)}), files["dir"] / "run")
    message = str(caught.value)
    assert message.startswith(f"3 texts of the --{flag} file also appear in {files['data']}, the training data (first: {shared[0][0].strip()!r})"), message
    assert "--drop-overlap" in message and "\n" not in message
    assert not (files["dir"] / "run" / "data").exists()


def test_one_overlapping_text_is_named_in_the_singular(files):
    data, _, test = files["rows"]
    path = write_csv(files["dir"] / "test.csv", test + [data[7]])
    with pytest.raises(GendistillError, match=r"^1 text of the --test file also appears in"):
        run_data(settings(files, test=str(path)), files["dir"] / "run")


def test_long_first_text_is_shortened_in_the_message(files):
    data, _, test = files["rows"]
    long_text = data[0][0] + " and" * 100
    rows = [(long_text, data[0][1])] + data[1:]
    source = write_csv(files["dir"] / "long.csv", rows)
    path = write_csv(files["dir"] / "test.csv", test + [(long_text.upper(), data[0][1])])
    with pytest.raises(GendistillError) as caught:
        run_data(DataSettings(source=str(source), dev_size=10, test=str(path)), files["dir"] / "run")
    assert "..." in str(caught.value) and len(str(caught.value)) < 400


def test_dev_file_overlapping_test_file_is_refused(files):
    _, dev, test = files["rows"]
    dev_path = write_csv(files["dir"] / "dev.csv", dev + [(variant(test[0][0]), test[0][1]), test[1]])
    test_path = write_csv(files["dir"] / "test.csv", test)
    with pytest.raises(GendistillError, match=r"^2 texts of the --dev file also appear in the --test file"):
        run_data(settings(files, dev=str(dev_path), test=str(test_path)), files["dir"] / "run")


def test_drop_overlap_drops_from_dev_and_test_and_counts(files):
    data, dev, test = files["rows"]
    test_path = write_csv(files["dir"] / "test.csv", test + [(variant(t), y) for t, y in data[:4]])
    # dev shares data[10], data[11] with DATA, test[0], test[1] with the test file, and data[2] with both
    # (the test file holds a variant of it, dropped there): 5 go, each counted once.
    dev_path = write_csv(files["dir"] / "dev.csv", dev + [data[10], data[11], (variant(test[0][0]), test[0][1]), test[1], data[2]])
    run_dir = files["dir"] / "run"
    metrics = run_data(settings(files, dev=str(dev_path), test=str(test_path), drop_overlap=True), run_dir)
    assert metrics["overlap_dropped"] == {"test": 4, "dev": 5}
    assert metrics["sizes"]["test"] == len(test) and metrics["sizes"]["dev"] == len(dev)
    keys = {split: {text_key(row["text"]) for row in read_split(run_dir, split)} for split in ("train", "dev", "test", "unlabeled")}
    assert keys["test"] == {text_key(t) for t, _ in test}  # the test file keeps what it shares with dev
    data_keys = {text_key(t) for t, _ in data}
    assert not keys["test"] & data_keys and not keys["dev"] & data_keys and not keys["dev"] & keys["test"]
    settings_json = json.loads((run_dir / "data" / "settings.json").read_text())
    assert settings_json["drop_overlap"] is True


def test_drop_overlap_leaving_nothing_is_refused(files):
    data, _, _ = files["rows"]
    path = write_csv(files["dir"] / "test.csv", data[:5])
    with pytest.raises(GendistillError, match="Every text of the --test file also appears"):
        run_data(settings(files, test=str(path), drop_overlap=True), files["dir"] / "run")


def test_dev_split_from_data_and_test_file(files):
    """Only --test given: its texts may not be in DATA's dev split either (DATA is checked as a whole)."""
    data, _, test = files["rows"]
    path = write_csv(files["dir"] / "test.csv", test + [(t.lower(), y) for t, y in data])
    run_dir = files["dir"] / "run"
    metrics = run_data(settings(files, test=str(path), drop_overlap=True), run_dir)
    assert metrics["overlap_dropped"]["test"] == len(data)
    everything = [text_key(row["text"]) for split in ("train", "dev", "test", "unlabeled") for row in read_split(run_dir, split)]
    assert len(everything) == len(set(everything))


def test_near_duplicates_in_data_never_reach_two_splits(tmp_path, toy_rows):
    """A case/whitespace variant of a training-pool text is dropped from DATA's dev/test split (and counted),
    so no text is scored on that a near-copy of was trained on; exact copies are dropped on reading."""
    rows = toy_rows + toy_rows[:5] + [(variant(text), label) for text, label in toy_rows] + [(text.lower() + "  ", label) for text, label in toy_rows]
    path = write_csv(tmp_path / "d.csv", rows)
    texts, labels, dropped = read_labeled(str(path))
    assert dropped["duplicate_text"] == 5 and len(texts) == len(set(texts))
    run_dir = tmp_path / "run"
    metrics = run_data(DataSettings(source=str(path), dev_size=40, test_size=60, per_class=10), run_dir)
    keys = {split: {text_key(row["text"]) for row in read_split(run_dir, split)} for split in ("train", "dev", "test", "unlabeled")}
    pool = keys["train"] | keys["unlabeled"]
    assert not (keys["test"] & pool) and not (keys["dev"] & pool) and not (keys["dev"] & keys["test"])
    assert metrics["overlap_dropped"]["test_split"] > 0 and metrics["sizes"]["test"] == 60 - metrics["overlap_dropped"]["test_split"]


# --- command line -----------------------------------------------------------------------------------


def test_compress_refuses_overlap_in_one_sentence(files):
    data, _, test = files["rows"]
    path = write_csv(files["dir"] / "test.csv", test + data[:12])
    result = CliRunner().invoke(main, ["compress", str(files["data"]), "--test", str(path), "--out", str(files["dir"] / "run"),
                                       "--dev-size", "10", "--no-export"])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("Error: 12 texts of the --test file also appear in") and message.count("\n") == 0, message
    assert "Traceback" not in result.output and "--drop-overlap" in message


def test_drop_overlap_is_an_option():
    from gendistill.compressor.pipeline import build_settings

    result = CliRunner().invoke(main, ["compress", "--help"])
    assert result.exit_code == 0 and "--drop-overlap" in result.output
    assert build_settings("data.csv", drop_overlap=True).data.drop_overlap is True
    assert build_settings("data.csv").data.drop_overlap is False
