"""The export stage: a verified bundle from a tiny trained student, its checks, layout, hashes and CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_student_run
from gendistill.runtime.bundle import load_manifest
from gendistill.runtime.errors import GendistillError

BASE_FILES = {"bundle.json", "model.onnx", "tokenizer.model", "labels.json", "golden.jsonl", "settings.json", "metrics.json"}
STAGE_RECORD = {"settings.json", "metrics.json"}


@pytest.fixture(scope="module")
def kim_bundle(tmp_path_factory, student_run) -> Path:
    """Every optional file at once: int8 model.onnx, model.fp32.onnx, model.ort and its operator config."""
    from gendistill.compressor.export_stage import run_export
    from gendistill.export.bundle import ExportSettings

    out = tmp_path_factory.mktemp("export") / "bundle"
    run_export(ExportSettings(keep_fp32=True, mobile=True), student_run, out)
    return out


def _inputs(run_dir: Path):
    from gendistill.compressor.student import StudentConfig, student_input

    student = run_dir / "distill" / "student"
    return student_input(student, StudentConfig.load(student / "student.json"))


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def _assert_one_sentence(result) -> None:
    lines = _error_lines(result)
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and lines[0].endswith("."), result.output
    assert "Traceback" not in result.output


def test_bundle_layout_hashes_and_manifest(kim_bundle, student_run):
    manifest = load_manifest(kim_bundle, verify=True)
    assert {p.name for p in kim_bundle.iterdir()} == BASE_FILES | {"model.fp32.onnx", "model.ort", "required_operators_and_types.config"}
    assert set(manifest["files"]) == {p.name for p in kim_bundle.iterdir()} - {"bundle.json"} - STAGE_RECORD
    assert not kim_bundle.with_name("bundle.partial").exists()

    spec = _inputs(student_run).spec
    assert manifest["labels"] == json.loads((kim_bundle / "labels.json").read_text()) == ["sport", "business", "tech"]
    assert manifest["preprocessing"] == {"lowercase": spec.lowercase, "digits_to_zero": spec.digits_to_zero,
                                         "max_length": spec.max_length, "min_length": 5, "pad_id": 0}
    assert manifest["tokenizer"] == {"file": "tokenizer.model", "type": "sentencepiece", "add_bos": False, "add_eos": False}
    assert (kim_bundle / "tokenizer.model").read_bytes() == (student_run / "distill/student/tokenizer.model").read_bytes()
    model = manifest["model"]
    assert model["precision"] == "int8" and model["architecture"] == "kim-cnn" and model["opset"] == 18 and model["params"] > 0
    assert model["inputs"] == [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]}]
    assert model["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", "num_labels"]}]
    settings = json.loads((kim_bundle / "settings.json").read_text())
    assert settings["quantize"] == "int8" and settings["mobile"] is True and settings["upstream"]["distill"]
    assert json.loads((kim_bundle / "metrics.json").read_text())["int8_test_accuracy"] == manifest["metrics"]["int8_test_accuracy"]
    assert set(manifest["versions"]) == {"gendistill", "torch", "onnx", "onnxruntime", "sentencepiece"}


def test_examples_are_correctly_classified_real_test_texts(kim_bundle, student_run):
    from gendistill.compressor.rundir import load_split
    from gendistill.runtime import Classifier

    manifest = load_manifest(kim_bundle)
    texts, labels = load_split(student_run, "test")
    truth = dict(zip(texts, labels))
    assert manifest["examples"], "the demo needs example texts"
    predicted = Classifier.load(kim_bundle).predict(manifest["examples"])
    assert [manifest["labels"][truth[t]] for t in manifest["examples"]] == predicted
    assert len(set(predicted)) == len(predicted)  # one per label


def test_checks_recorded_and_within_limits(kim_bundle):
    metrics = load_manifest(kim_bundle)["metrics"]
    assert metrics["fp32_vs_torch_max_abs_diff"] < 1e-4
    assert metrics["int8_vs_fp32_agreement"] >= 0.99
    assert metrics["int8_test_accuracy"] >= metrics["fp32_test_accuracy"] - 0.005
    assert metrics["test_examples"] == 45
    assert metrics["latency_ms"]["fp32_batch1"] > 0 and metrics["latency_ms"]["int8_batch1"] > 0
    assert metrics["bytes"] == {"fp32": (kim_bundle / "model.fp32.onnx").stat().st_size, "int8": (kim_bundle / "model.onnx").stat().st_size}


def test_onnx_graph_has_dynamic_named_axes(kim_bundle):
    from gendistill.runtime.classifier import onnx_session as session

    for name in ("model.onnx", "model.fp32.onnx"):
        onnx_session = session(kim_bundle / name)
        (graph_input,), (graph_output,) = onnx_session.get_inputs(), onnx_session.get_outputs()
        assert (graph_input.name, graph_input.type, graph_input.shape) == ("input_ids", "tensor(int64)", ["batch", "sequence"])
        assert graph_output.name == "logits" and graph_output.shape[0] == "batch"
        for batch, length in ((1, 5), (3, 40)):
            logits = onnx_session.run(None, {"input_ids": np.full((batch, length), 7, dtype=np.int64)})[0]
            assert logits.shape == (batch, 3) and logits.dtype == np.float32


def test_golden_file_reproduces_tokenizer_and_model(kim_bundle, student_run):
    from gendistill.export.golden import EDGE_CASES
    from gendistill.runtime.classifier import onnx_session as session
    from gendistill.runtime.classifier import softmax

    rows = [json.loads(line) for line in (kim_bundle / "golden.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [row["text"] for row in rows]
    assert 250 <= len(rows) <= 300 and len(set(texts)) == len(texts)
    assert set(EDGE_CASES) <= set(texts)
    test_texts = [json.loads(line)["text"] for line in (student_run / "data/test.jsonl").read_text().splitlines()]
    assert set(test_texts) <= set(texts)

    inputs, onnx_session = _inputs(student_run), session(kim_bundle / "model.onnx")
    assert [row["ids"] for row in rows] == inputs.encode(texts)
    assert any(row["ids"] == [] for row in rows)  # the runtime feeds [pad] * min_length
    assert any(len(row["ids"]) == inputs.spec.max_length for row in rows)  # truncated
    assert any(len(row["text"]) >= 3000 for row in rows)
    for row in rows[::7]:
        padded = np.zeros((1, max(5, len(row["ids"]))), dtype=np.int64)
        padded[0, : len(row["ids"])] = row["ids"]
        probabilities = softmax(onnx_session.run(None, {"input_ids": padded})[0])[0]
        np.testing.assert_allclose(probabilities, row["probabilities"], rtol=0, atol=1e-6)
        assert abs(sum(row["probabilities"]) - 1) < 1e-5


def test_mobile_ort_model_loads_and_matches(kim_bundle, student_run):
    from gendistill.runtime.classifier import onnx_session as session

    config_text = (kim_bundle / "required_operators_and_types.config").read_text()
    assert "ai.onnx" in config_text and "Conv" in config_text
    texts = [json.loads(line)["text"] for line in (student_run / "data/test.jsonl").read_text().splitlines()]
    batch = _inputs(student_run)(texts)
    onnx_logits = session(kim_bundle / "model.onnx").run(None, {"input_ids": batch})[0]
    ort_logits = session(kim_bundle / "model.ort").run(None, {"input_ids": batch})[0]
    np.testing.assert_allclose(ort_logits, onnx_logits, rtol=0, atol=1e-4)
    assert (ort_logits.argmax(1) == onnx_logits.argmax(1)).all()


def test_changed_file_fails_hash_check(kim_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(kim_bundle, copy)
    with open(copy / "golden.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n")
    with pytest.raises(GendistillError, match="does not match the SHA-256"):
        load_manifest(copy)


def _perturb_initializer(path: Path, name_part: str, change) -> None:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path))
    tensor = next(t for t in graph.graph.initializer if name_part in t.name)
    tensor.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(tensor).copy()), tensor.name))
    onnx.save(graph, str(path))


def test_broken_fp32_export_is_refused_and_nothing_left(student_run, tmp_path, monkeypatch):
    from gendistill.compressor.export_stage import run_export
    from gendistill.export import onnx_export
    from gendistill.export.bundle import ExportSettings

    real_export = onnx_export.export_fp32

    def export_with_wrong_bias(model, min_length, path, opset):
        written = real_export(model, min_length, path, opset)
        _perturb_initializer(path, "classifier.bias", lambda bias: bias + 0.01)
        return written

    monkeypatch.setattr(onnx_export, "export_fp32", export_with_wrong_bias)
    out = tmp_path / "bundle"
    with pytest.raises(GendistillError, match=r"differ from PyTorch's by up to 1\.00e-02"):
        run_export(ExportSettings(), student_run, out)
    assert list(tmp_path.iterdir()) == []


def test_res_cnn_bundle_is_replaced_only_by_one_that_passes(tmp_path, toy_rows, monkeypatch):
    """The pipeline re-making its bundle: a failing export keeps the old one intact, a passing one replaces it."""
    from gendistill.compressor.export_stage import run_export
    from gendistill.export import quantize
    from gendistill.export.bundle import ExportSettings

    run_dir = make_student_run(tmp_path / "run", toy_rows, architecture="res-cnn")
    run_export(ExportSettings(quantize="none"), run_dir)
    bundle = run_dir / "bundle"
    assert {p.name for p in bundle.iterdir()} == BASE_FILES
    manifest = load_manifest(bundle)
    assert manifest["model"]["precision"] == "fp32" and manifest["model"]["architecture"] == "res-cnn"
    assert manifest["metrics"]["int8_vs_fp32_agreement"] is None and manifest["metrics"]["bytes"]["int8"] is None
    assert manifest["metrics"]["fp32_vs_torch_max_abs_diff"] < 1e-4

    def quantize_to_one_label(fp32_path, int8_path, calibration_batches):
        shutil.copyfile(fp32_path, int8_path)
        _perturb_initializer(Path(int8_path), "classifier.bias", lambda bias: bias + np.array([100, 0, 0], dtype=bias.dtype))

    with monkeypatch.context() as patch:
        patch.setattr(quantize, "quantize_int8", quantize_to_one_label)
        with pytest.raises(GendistillError, match="picks the fp32 model's label on only"):
            run_export(ExportSettings(), run_dir)
    assert load_manifest(bundle) == manifest  # old bundle untouched, hashes still verify
    assert sorted(p.name for p in run_dir.iterdir()) == ["bundle", "data", "distill"]

    run_export(ExportSettings(), run_dir)
    replaced = load_manifest(bundle)
    assert replaced["model"]["precision"] == "int8" and replaced["metrics"]["int8_vs_fp32_agreement"] >= 0.99
    assert sorted(p.name for p in run_dir.iterdir()) == ["bundle", "data", "distill"]


def test_cli_export_prints_table(student_run, tmp_path):
    from gendistill.runtime.cli import main

    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["export", str(student_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == BASE_FILES
    for expected in ("model file size", "batch-1 latency (1 thread)", "parameters", "fp32 vs PyTorch", "int8 vs fp32 label agreement", " kB", " ms"):
        assert expected in result.output
    assert "Error" not in result.output


def test_cli_refuses_bad_input_without_damage(student_run, tmp_path):
    from gendistill.runtime.cli import main

    runner = CliRunner()
    not_a_run = tmp_path / "empty-run"
    not_a_run.mkdir()
    result = runner.invoke(main, ["export", str(not_a_run), "--out", str(tmp_path / "b1")])
    _assert_one_sentence(result)
    assert "no finished student" in result.output and not (tmp_path / "b1").exists()

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    result = runner.invoke(main, ["export", str(student_run), "--out", str(occupied)])
    _assert_one_sentence(result)
    assert "not empty" in result.output
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"] and (occupied / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "occupied.partial").exists()

    result = runner.invoke(main, ["export", str(student_run), "--out", str(tmp_path / "b2"), "--quantize", "none", "--keep-fp32"])
    _assert_one_sentence(result)
    assert not (tmp_path / "b2").exists()


def test_settings_are_validated():
    from gendistill.export.bundle import ExportSettings

    for bad in ({"quantize": "int4"}, {"latency_threads": 0}, {"calibration_size": 0}, {"opset": 3}, {"quantize": "none", "keep_fp32": True}):
        with pytest.raises(GendistillError):
            ExportSettings(**bad)
    assert ExportSettings().quantize == "int8"


def test_bundle_files_get_ordinary_permissions(kim_bundle):
    """Atomic writes go through mkstemp (owner-only); a bundle must still be readable by a web server's user."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in kim_bundle.iterdir():
        readable = 0o444 & ~umask  # read for everyone the umask allows
        assert path.stat().st_mode & readable == readable, path.name
