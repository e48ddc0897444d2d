"""Damaged and tampered bundles: each is refused with one sentence (library and `predict`), never loaded.

The runtime opens only files that bundle.json hashes; every listed file is a plain name inside the bundle
and a regular file. Symbolic links are refused, even to a file with the same bytes: a bundle is copied,
uploaded and served as a directory, and a link carries a path, not the bytes that were checked.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gendistill.runtime import Classifier, GendistillError
from gendistill.runtime.bundle import file_record
from gendistill.runtime.cli import main


@pytest.fixture
def copy(bundle, tmp_path) -> Path:
    """A private copy of the shared bundle, inside tmp_path/outside so that links and `..` have a target."""
    return Path(shutil.copytree(bundle, tmp_path / "outside" / "bundle"))


def edit_manifest(bundle: Path, change) -> None:
    path = bundle / "bundle.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def rehash(bundle: Path, *names: str) -> None:
    """Record the current bytes of `names`: what someone editing a bundle by hand would also do."""
    edit_manifest(bundle, lambda m: m["files"].update({name: file_record(bundle / name) for name in names}))


def assert_refused(bundle: Path, *fragments: str, verify: bool = True) -> str:
    """Classifier.load and `gendistill predict` both refuse, in one sentence containing `fragments`."""
    with pytest.raises(GendistillError) as caught:
        Classifier.load(bundle, verify=verify)
    message = str(caught.value)
    assert "\n" not in message and message.endswith("."), message
    for fragment in fragments:
        assert fragment in message, message
    if verify:
        result = CliRunner().invoke(main, ["predict", str(bundle), "a goal for the team"])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and result.output.strip().startswith("Error: ") and result.output.strip().count("\n") == 0
    return message


def test_untouched_copy_loads(copy):
    assert Classifier.load(copy).predict("a goal for the team") in json.loads((copy / "labels.json").read_text())


def test_bundle_directory_may_be_a_link(copy, tmp_path):
    """Only the files inside must be real: a link to the whole bundle (a `current` release) is fine."""
    link = tmp_path / "current"
    link.symlink_to(copy, target_is_directory=True)
    assert Classifier.load(link).predict("shares fell") is not None


# --- files the runtime opens ------------------------------------------------------------------------


@pytest.mark.parametrize("section, listed", [("model", "model.onnx"), ("tokenizer", "tokenizer.model")])
@pytest.mark.parametrize("where", ["parent", "absolute", "unlisted"])
def test_opened_file_outside_the_hashed_list(copy, section, listed, where):
    """bundle.json naming a model/tokenizer outside its hashed files: the named file is never opened."""
    target = {"parent": copy.parent / f"x{Path(listed).suffix}", "absolute": copy.parent / f"abs{Path(listed).suffix}",
              "unlisted": copy / f"other{Path(listed).suffix}"}[where]
    shutil.copyfile(copy / listed, target)  # the same bytes: only the name is wrong
    name = {"parent": f"../{target.name}", "absolute": str(target), "unlisted": target.name}[where]
    edit_manifest(copy, lambda m: m[section].update(file=name))
    assert_refused(copy, f"{name!r} as the {section} file", "not among its hashed files")
    assert_refused(copy, "not among its hashed files", verify=False)


@pytest.mark.parametrize("name", [None, 5, ["model.onnx"], ""])
def test_opened_file_name_is_not_a_string(copy, name):
    edit_manifest(copy, lambda m: m["model"].update(file=name))
    assert_refused(copy, "as the model file")


def test_model_file_may_be_another_hashed_file(copy):
    """A listed, hashed file is fine: the fp32 model shipped beside an int8 one is loaded this way."""
    shutil.copyfile(copy / "model.onnx", copy / "model.fp32.onnx")
    rehash(copy, "model.fp32.onnx")
    edit_manifest(copy, lambda m: m["model"].update(file="model.fp32.onnx"))
    assert Classifier.load(copy).predict("a new phone") is not None


@pytest.mark.parametrize("name", ["../model.onnx", "sub/model.onnx", "sub\\model.onnx", "/etc/hostname", "..", ".", "model.onnx:stream",
                                  "nul\x00.onnx"])
def test_listed_file_with_a_path(copy, name):
    (copy / "sub").mkdir()
    shutil.copyfile(copy / "model.onnx", copy / "sub" / "model.onnx")
    edit_manifest(copy, lambda m: m["files"].update({name: m["files"]["model.onnx"]}))
    assert_refused(copy, "not a plain name inside the bundle")


@pytest.mark.parametrize("record", ["abc", None, {"sha256": "00"}, {"bytes": 3}, {"sha256": 5, "bytes": 3}, {"sha256": "00", "bytes": True}])
def test_malformed_file_record(copy, record):
    edit_manifest(copy, lambda m: m["files"].update({"golden.jsonl": record}))
    assert_refused(copy, "records no SHA-256 and size for golden.jsonl")


@pytest.mark.parametrize("files", [None, [], {}, "model.onnx"])
def test_no_file_list(copy, files):
    edit_manifest(copy, lambda m: m.update(files=files))
    assert_refused(copy, "lists no files")


# --- schema version --------------------------------------------------------------------------------


@pytest.mark.parametrize("version, fragment", [(0, "too old"), (-3, "too old"), (2, "newer"), (True, "no integer schema_version"),
                                               ("1", "no integer schema_version"), (1.0, "no integer schema_version"),
                                               (None, "no integer schema_version")])
def test_changed_schema_version(copy, version, fragment):
    edit_manifest(copy, lambda m: m.update(schema_version=version))
    assert_refused(copy, fragment)


def test_missing_schema_version(copy):
    edit_manifest(copy, lambda m: m.pop("schema_version"))
    assert_refused(copy, "no integer schema_version")


@pytest.mark.parametrize("content", ["{not json", "[" * 100_000, "[1, 2]", "\ufffe\x00"])
def test_unreadable_manifest(copy, content):
    (copy / "bundle.json").write_text(content, encoding="utf-8")
    assert_refused(copy, "bundle.json")


def test_manifest_not_utf8(copy):
    (copy / "bundle.json").write_bytes(b"\xff\xfe{}")
    assert_refused(copy, "not valid JSON")


# --- labels ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [["tech", "business", "sport"], ["sport", "business"], ["sport", "business", "tech", "weather"], "sport", None])
def test_labels_json_disagrees(copy, labels):
    """Even re-hashed (so that only the labels differ), a labels.json that says otherwise is refused."""
    (copy / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    rehash(copy, "labels.json")
    assert_refused(copy, "labels.json disagrees with the labels in bundle.json")


def test_labels_json_not_json(copy):
    (copy / "labels.json").write_bytes(b"\x80 not json")
    rehash(copy, "labels.json")
    assert_refused(copy, "disagrees")


def test_labels_changed_in_both_files_but_not_in_the_model(copy):
    """bundle.json is not hashed: four labels for a three-label model are refused at load, not at predict."""
    labels = ["sport", "business", "tech", "weather"]
    (copy / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    rehash(copy, "labels.json")
    edit_manifest(copy, lambda m: m.update(labels=labels))
    assert_refused(copy, "scores 3 labels but bundle.json lists 4")


# --- damaged files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5])
def test_truncated_model(copy, keep):
    model = copy / "model.onnx"
    data = model.read_bytes()
    model.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    assert_refused(copy, "model.onnx does not match the SHA-256")
    # Without the hash check (or with a manifest re-hashed to match), onnxruntime's refusal is one sentence too.
    assert_refused(copy, "onnxruntime cannot load", verify=False)
    rehash(copy, "model.onnx")
    assert_refused(copy, "onnxruntime cannot load")


def test_truncated_tokenizer_rehashed(copy):
    tokenizer = copy / "tokenizer.model"
    tokenizer.write_bytes(tokenizer.read_bytes()[:50])
    rehash(copy, "tokenizer.model")
    assert_refused(copy, "sentencepiece cannot load")


def test_model_swapped_for_another_file_rehashed(copy):
    shutil.copyfile(copy / "tokenizer.model", copy / "model.onnx")
    rehash(copy, "model.onnx")
    assert_refused(copy, "onnxruntime cannot load")


def test_listed_file_replaced_by_a_directory(copy):
    (copy / "golden.jsonl").unlink()
    (copy / "golden.jsonl").mkdir()
    assert_refused(copy, "golden.jsonl is missing or not a regular file")


def test_unreadable_listed_file(copy):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    (copy / "golden.jsonl").chmod(0)
    assert_refused(copy, "cannot be read")


# --- symbolic links ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.onnx", "tokenizer.model", "labels.json", "golden.jsonl"])
def test_listed_file_replaced_by_a_link_to_the_same_bytes(copy, name):
    """Same bytes, so the hash matches: the link itself is refused, with or without verification."""
    real = copy.parent / f"real-{name}"
    shutil.move(copy / name, real)
    (copy / name).symlink_to(real)
    assert_refused(copy, f"{name} is a symbolic link", "cp -L")
    assert_refused(copy, "symbolic link", verify=False)


def test_relative_link_inside_the_bundle_is_refused_too(copy):
    shutil.move(copy / "golden.jsonl", copy / "golden.real")
    (copy / "golden.jsonl").symlink_to("golden.real")
    assert_refused(copy, "golden.jsonl is a symbolic link")


def test_dangling_link(copy):
    (copy / "golden.jsonl").unlink()
    (copy / "golden.jsonl").symlink_to(copy.parent / "nowhere")
    assert_refused(copy, "symbolic link")


def test_manifest_replaced_by_a_link(copy):
    real = copy.parent / "bundle.json"
    shutil.move(copy / "bundle.json", real)
    (copy / "bundle.json").symlink_to(real)
    assert_refused(copy, "bundle.json is a symbolic link")


# --- hand-edited fields the runtime reads -------------------------------------------------------------


@pytest.mark.parametrize("key, value, fragment", [
    ("max_length", "abc", "max_length"), ("max_length", 12.5, "max_length"), ("max_length", True, "max_length"), ("max_length", 0, "max_length"),
    ("min_length", None, "min_length"), ("pad_id", -1, "pad_id"), ("lowercase", "yes", "lowercase"), ("digits_to_zero", 1, "digits_to_zero"),
])
def test_bad_preprocessing_values(copy, key, value, fragment):
    edit_manifest(copy, lambda m: m["preprocessing"].update({key: value}))
    assert_refused(copy, fragment)


@pytest.mark.parametrize("change, fragment", [
    (lambda m: m.update(tokenizer="sentencepiece"), "tokenizer"),
    (lambda m: m.update(tokenizer={"type": "bpe", "file": "tokenizer.model"}), "tokenizer"),
    (lambda m: m.update(model=["model.onnx"]), "lacks the field"),
    (lambda m: m.update(preprocessing=None), "lacks the field"),
    (lambda m: m["model"]["inputs"][0].update(name=5), "input or output"),
    (lambda m: m["model"]["inputs"][0].update(name="ids"), "does not have the input 'ids'"),
    (lambda m: m["model"]["outputs"][0].update(name="probs"), "output 'probs'"),
    (lambda m: m.update(labels=["only-one"]), "labels"),
])
def test_hand_edited_manifest(copy, change, fragment):
    edit_manifest(copy, change)
    assert_refused(copy, fragment)
