"""The export stage: a verified bundle from a tiny trained student, its checks, layout, hashes and CLI."""

from __future__ import annotations

import json
import logging
import re
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
    assert settings["quantize"] == "auto" and settings["mobile"] is True and settings["upstream"]["distill"]
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
    # A CNN's float32 rounding is far under 1e-4, so the fixed limit decides.
    assert 0 < metrics["torch_rounding_max_abs_diff"] < 1e-5 and metrics["fp32_vs_torch_limit"] == 1e-4
    check = metrics["int8_check"]
    # dev, test and unlabeled texts less the calibration texts: far more than the 45 test texts
    assert check["texts"] > 2000 and check["min_texts"] == 437 and check["recipe"] == "all-int8"
    (attempt,) = check["attempts"]
    assert attempt["passed"] and attempt["failed_rule"] is None and attempt["disagreement_bound"] < check["limit"] == 0.01
    assert metrics["int8_vs_fp32_agreement"] == attempt["agreement"] == 1 - attempt["disagreements"] / check["texts"]
    assert metrics["int8_test_accuracy"] == attempt["int8_test_accuracy"] >= metrics["fp32_test_accuracy"] - 0.005
    assert metrics["int8_refused"] is None
    assert metrics["test_examples"] == 45
    assert metrics["latency_ms"]["fp32_batch1"] > 0 and metrics["latency_ms"]["int8_batch1"] > 0
    assert metrics["bytes"] == {"fp32": (kim_bundle / "model.fp32.onnx").stat().st_size, "int8": (kim_bundle / "model.onnx").stat().st_size}


def test_int8_rule_accounts_for_how_many_texts_it_rests_on():
    from gendistill.export.verify import disagreement_bound, judge_int8, loss_p_value, min_check_texts, refusal_reason

    # One-sided Clopper-Pearson bounds; the reference values are scipy.stats.beta.ppf(0.95, k + 1, n - k).
    assert disagreement_bound(0, 59, 0.95) == pytest.approx(1 - 0.05 ** (1 / 59))
    assert disagreement_bound(1, 59, 0.95) == pytest.approx(0.077898, abs=1e-6)  # 1 of 59 says nothing about a 1% rate
    assert disagreement_bound(9, 799, 0.95) == pytest.approx(0.019574, abs=1e-6)  # 9 of 799: not shown to be under 1%
    assert disagreement_bound(25, 5000, 0.95) == pytest.approx(0.006976, abs=1e-6)  # 0.5% of 5000 texts: shown to be under 1%
    assert disagreement_bound(0, 0, 0.95) == 1.0 and disagreement_bound(3, 3, 0.95) == 1.0
    assert min_check_texts(0.95) == 299
    assert disagreement_bound(0, 299, 0.95) < 0.01 <= disagreement_bound(0, 298, 0.95)
    assert loss_p_value(1, 0) == 0.5 and loss_p_value(0, 0) == 1.0 and loss_p_value(12, 1) == pytest.approx(14 / 2**13)

    def logits(labels, num_labels=3):
        return np.eye(num_labels, dtype=np.float32)[np.asarray(labels)]

    def judge(check_fp32, check_int8, test_labels, test_fp32, test_int8):
        return judge_int8(logits(check_fp32), logits(check_int8), logits(test_fp32), logits(test_int8), np.asarray(test_labels), 0.95)

    right = [0] * 5000
    one_of_59 = judge([0] * 59, [1] + [0] * 58, [0] * 59, [0] * 59, [0] * 59)
    assert one_of_59["failed_rule"] == "agreement" and one_of_59["disagreement_bound"] > 0.07
    nine_of_799 = judge([0] * 799, [1] * 9 + [0] * 790, [0] * 59, [0] * 59, [0] * 59)
    assert nine_of_799["failed_rule"] == "agreement"
    # A 1.7-point loss on 59 test texts is one text: chance, so it does not refuse int8 by itself.
    one_test_text = judge(right, right, [0] * 59, [0] * 59, [1] + [0] * 58)
    assert one_test_text["passed"] and one_test_text["test_accuracy_loss"] == pytest.approx(1 / 59)
    # 12 of 2000 test texts newly wrong, 1 newly right: a 0.55-point loss the test split resolves.
    twelve = judge(right, right, [0] * 2000, [0] * 2000, [1] * 12 + [0] * 1988)
    twelve_one = judge(right, right, [0] * 2000, [1] + [0] * 1999, [0] + [1] * 12 + [0] * 1987)
    assert twelve["failed_rule"] == twelve_one["failed_rule"] == "accuracy" and twelve_one["test_texts_better"] == 1
    assert refusal_reason(twelve, 5000, 0.95) == ("int8 lost 0.6 points of test accuracy against fp32 (12 test texts newly wrong, "
                                                  "0 newly right, p = 0.00024; limit 0.5 points)")
    assert refusal_reason(nine_of_799, 799, 0.95) == ("int8 disagreed with fp32 on 9 of 799 texts (1.1%; up to 2.0% at 95.0% confidence, "
                                                      "limit 1%)")


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


def test_calibrated_int8_weights_use_7_bits_so_no_cpu_saturates(student_run, tmp_path):
    """onnxruntime's U8S8 kernels on x86 without VNNI (AVX2) add pairs of uint8 x int8 products in 16 bits: with
    weights in [-64, 64] a pair stays under 2^15 (2 x 255 x 64 = 32,640), so an AVX2 CPU, a VNNI one and the browser all compute the same."""
    import onnx
    from onnx import numpy_helper

    from gendistill.export import quantize
    from gendistill.export.onnx_export import export_fp32
    from gendistill.compressor.student import load_student

    model, config = load_student(student_run / "distill" / "student")
    fp32 = tmp_path / "fp32.onnx"
    export_fp32(model, config.min_length, fp32, opset=18)
    batches = [_inputs(student_run)([t for t in ("a good film", "a bad day at the office", "news of the world")])]
    for recipe in quantize.RECIPES[:-1]:  # the calibrated ones (int8-weights computes in fp32)
        quantize.quantize_int8(fp32, tmp_path / f"{recipe.name}.onnx", batches, recipe)
        weights = [numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / f"{recipe.name}.onnx")).graph.initializer
                   if i.data_type == onnx.TensorProto.INT8 and len(i.dims) > 1]
        assert weights and all(np.abs(w.astype(np.int32)).max() <= 64 for w in weights), recipe.name
        assert max(int(np.abs(w).max()) for w in weights) > 40, recipe.name  # 7 bits used, not fewer


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


def test_fp32_limit_widens_only_as_far_as_pytorchs_own_rounding():
    """A GRU can amplify float32 rounding over its steps: a student whose PyTorch logits are 2e-4 from float64 may be
    2.3e-4 from PyTorch in ONNX (measured on a trained bigru). The limit follows that rounding, not a broken graph."""
    from gendistill.export.verify import check_fp32_against_torch

    exact = np.array([[-0.4765, 0.5022], [1.25, -0.75]])
    torch_logits = (exact + 2e-4).astype(np.float32)
    check = check_fp32_against_torch(torch_logits, torch_logits + np.float32(2.3e-4), exact)
    assert check["diff"] == pytest.approx(2.3e-4, rel=1e-3) and check["limit"] == pytest.approx(2e-3, rel=1e-3)
    with pytest.raises(GendistillError, match=r"by up to 2\.30e-04 \(limit 1\.0e-04: PyTorch's own float32 rounding is 1\.0e-07\)"):
        check_fp32_against_torch(torch_logits, torch_logits + np.float32(2.3e-4), torch_logits.astype(np.float64) + 1e-7)
    for broken in (torch_logits + np.float32(0.05), np.full_like(torch_logits, np.nan)):  # a different model, NaN
        with pytest.raises(GendistillError, match="the export is refused"):
            check_fp32_against_torch(torch_logits, broken, exact)


def _quantize_to_one_label(fp32_path, int8_path, calibration_batches, recipe):
    """A broken int8 model, whatever the recipe: it says "sport" to everything."""
    shutil.copyfile(fp32_path, int8_path)
    _perturb_initializer(Path(int8_path), "classifier.bias", lambda bias: bias + np.array([100, 0, 0], dtype=bias.dtype))


def test_res_cnn_bundle_is_replaced_only_by_one_that_passes(tmp_path, toy_rows, monkeypatch):
    """The pipeline re-making its bundle: an int8 demand that fails keeps the old one intact, a passing export replaces it."""
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
    assert manifest["metrics"]["int8_check"] is None and manifest["metrics"]["int8_refused"] is None
    assert manifest["metrics"]["fp32_vs_torch_max_abs_diff"] < 1e-4

    with monkeypatch.context() as patch:
        patch.setattr(quantize, "quantize_int8", _quantize_to_one_label)
        with pytest.raises(GendistillError, match=r"--quantize int8 was refused because int8 disagreed with fp32 on \d+ of \d+ texts"):
            run_export(ExportSettings(quantize="int8"), run_dir)
    assert load_manifest(bundle) == manifest  # old bundle untouched, hashes still verify
    assert sorted(p.name for p in run_dir.iterdir()) == ["bundle", "data", "distill"]

    run_export(ExportSettings(quantize="int8"), run_dir)
    replaced = load_manifest(bundle)
    assert replaced["model"]["precision"] == "int8" and replaced["metrics"]["int8_check"]["attempts"][-1]["passed"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["bundle", "data", "distill"]


def _report_markdown(export_metrics: dict) -> str:
    """The run report's markdown for a run whose only finished stage is this export."""
    from gendistill.compressor.evaluate import render_markdown

    return render_markdown({"dataset": "toy", "labels": ["sport", "business", "tech"], "splits": {}, "per_class": None,
                            "seconds": {}, "bundle": {"path": "bundle", **export_metrics}})


def test_int8_that_fails_every_recipe_ships_fp32_by_default(student_run, tmp_path, monkeypatch, caplog):
    from gendistill.compressor.export_stage import run_export
    from gendistill.export import quantize
    from gendistill.export.bundle import ExportSettings
    from gendistill.runtime.cli import main

    monkeypatch.setattr(quantize, "quantize_int8", _quantize_to_one_label)
    out = tmp_path / "bundle"
    with caplog.at_level(logging.WARNING):
        stage_metrics = run_export(ExportSettings(keep_fp32=True), student_run, out)
    manifest = load_manifest(out)
    assert manifest["model"]["precision"] == stage_metrics["precision"] == "fp32"
    assert {p.name for p in out.iterdir()} == BASE_FILES  # model.onnx is the fp32 model: no model.fp32.onnx beside it
    reason = manifest["metrics"]["int8_refused"]
    assert reason == stage_metrics["int8_refused"] == json.loads((out / "metrics.json").read_text())["int8_refused"]
    texts = manifest["metrics"]["int8_check"]["texts"]
    assert re.fullmatch(rf"int8 disagreed with fp32 on \d+ of {texts} texts \(.*\) with the best of its 4 recipes \(.+\)", reason)
    attempts = manifest["metrics"]["int8_check"]["attempts"]
    assert [a["recipe"] for a in attempts] == ["all-int8", "fp32-classifier", "fp32-classifier-per-tensor", "int8-weights"]
    assert all(a["failed_rule"] == "agreement" for a in attempts) and manifest["metrics"]["int8_check"]["recipe"] is None
    assert manifest["metrics"]["int8_vs_fp32_agreement"] is None and manifest["metrics"]["int8_test_accuracy"] is None
    warnings = [r for r in caplog.records if r.name.startswith("gendistill") and r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [f"The bundle is fp32 because {reason}."]

    assert f"The bundle is fp32 because {reason}.\n" in _report_markdown(stage_metrics)

    result = CliRunner().invoke(main, ["export", str(student_run), "--out", str(tmp_path / "demanded"), "--quantize", "int8"])
    _assert_one_sentence(result)
    assert "--quantize int8 was refused because int8 disagreed" in result.output and not (tmp_path / "demanded").exists()


def test_int8_is_not_tried_on_too_few_texts(student_run, tmp_path, monkeypatch):
    from gendistill.compressor.export_stage import run_export
    from gendistill.export import quantize
    from gendistill.export.bundle import ExportSettings

    run_dir = tmp_path / "run"
    shutil.copytree(student_run, run_dir)
    (run_dir / "data" / "unlabeled.jsonl").write_text("")
    monkeypatch.setattr(quantize, "quantize_int8", lambda *args: pytest.fail("quantized although int8 could not pass"))
    metrics = run_export(ExportSettings(), run_dir)
    assert metrics["precision"] == "fp32" and metrics["int8_check"]["attempts"] == []
    # dev and test, less the dev texts that calibrated int8 (train is shorter than --calibration-size)
    assert metrics["int8_refused"] == "only 45 texts were there to check int8 against fp32, too few to show that they agree (at least 437 are needed)"
    with pytest.raises(GendistillError, match="only 45 texts were there to check int8"):
        run_export(ExportSettings(quantize="int8"), run_dir, tmp_path / "demanded")


def test_fp32_classifier_rescues_int8_when_logits_are_spread_wide(student_run, tmp_path):
    """Not a mock: a student whose logits share a large per-text offset (argmax unchanged) loses its
    near-ties when the logits are rounded to 256 levels; keeping the classifier in fp32 keeps them."""
    from safetensors.torch import load_file, save_file

    from gendistill.compressor.export_stage import run_export
    from gendistill.export.bundle import ExportSettings

    run_dir = tmp_path / "run"
    shutil.copytree(student_run, run_dir)
    weights_file = run_dir / "distill" / "student" / "student.safetensors"
    weights = load_file(str(weights_file))
    weights["classifier.weight"] += 3.0  # every logit gains 3 * (sum of the pooled features)
    save_file(weights, str(weights_file))

    metrics = run_export(ExportSettings(), run_dir)
    assert metrics["precision"] == "int8" and metrics["int8_refused"] is None
    first, rescue = metrics["int8_check"]["attempts"]
    assert (first["recipe"], first["failed_rule"]) == ("all-int8", "agreement")
    assert (rescue["recipe"], rescue["passed"]) == ("fp32-classifier", True) and metrics["int8_check"]["recipe"] == "fp32-classifier"
    assert rescue["disagreements"] * 5 < first["disagreements"]
    assert metrics["int8_vs_fp32_agreement"] == rescue["agreement"]
    assert f"on {metrics['int8_check']['texts']} texts (recipe fp32-classifier)" in _report_markdown(metrics)


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
    assert ExportSettings().quantize == "auto"
    assert ExportSettings(keep_fp32=True).keep_fp32 and ExportSettings(quantize="int8", keep_fp32=True).keep_fp32


def test_bundle_files_get_ordinary_permissions(kim_bundle):
    """Atomic writes go through mkstemp (owner-only); a bundle must still be readable by a web server's user."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in kim_bundle.iterdir():
        readable = 0o444 & ~umask  # read for everyone the umask allows
        assert path.stat().st_mode & readable == readable, path.name


@pytest.mark.parametrize("architecture", ["static", "bigru"])
def test_static_and_recurrent_students_export_to_a_verified_bundle(tmp_path, toy_rows, architecture):
    """The static student (weighted mean of subword vectors + MLP) and the bidirectional GRU go through the same
    export, checks and golden file; the GRU's graph keeps both axes dynamic and reads texts of any length."""
    import onnx
    from onnx import numpy_helper

    from gendistill.compressor.export_stage import run_export
    from gendistill.export.bundle import ExportSettings
    from gendistill.runtime.classifier import Classifier

    run_dir = make_student_run(tmp_path / "run", toy_rows, architecture=architecture, epochs=30)
    run_export(ExportSettings(quantize="auto"), run_dir)
    manifest = load_manifest(run_dir / "bundle")
    assert manifest["model"]["architecture"] == architecture
    assert manifest["metrics"]["fp32_vs_torch_max_abs_diff"] < 1e-4
    graph = onnx.load(str(run_dir / "bundle" / "model.onnx")).graph
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert (architecture == "bigru") == ("GRU" in {node.op_type for node in graph.node})
    # int8: the subword table and, for the GRU, its weights (W and R of both directions) are stored in 8 bits.
    assert manifest["model"]["precision"] == "int8"
    large = [numpy_helper.to_array(i) for i in graph.initializer if numpy_helper.to_array(i).size > 200]
    assert large and {array.dtype.itemsize for array in large} == {1}
    assert sum(array.ndim == 3 for array in large) == (2 if architecture == "bigru" else 0)  # W and R, both directions
    classifier = Classifier.load(run_dir / "bundle")
    texts = [t for t, _ in toy_rows[:40]]
    # Padding is exact: a text alone gets the logits it gets inside a batch.
    together = classifier.predict_proba(texts)
    alone = np.stack([classifier.predict_proba([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.mean([classifier.predict([t])[0] == y for t, y in toy_rows[:200]]) > 0.6


def test_weight_only_int8_stores_each_subword_vector_in_int8_with_its_own_scale(tmp_path, toy_rows):
    """The static student's table as int8 rows, each with its own scale: the logits stay within rounding of
    fp32, the argmax is fp32's, the table takes a quarter of the bytes; the int8-weights recipe is exactly that."""
    import onnx
    from onnx import numpy_helper

    from gendistill.compressor.export_stage import run_export
    from gendistill.compressor.student import load_student, student_input
    from gendistill.export import quantize
    from gendistill.export.bundle import ExportSettings
    from gendistill.runtime.classifier import onnx_session

    run_dir = make_student_run(tmp_path / "run", toy_rows, architecture="static", epochs=30)
    run_export(ExportSettings(quantize="none"), run_dir)
    fp32 = run_dir / "bundle" / "model.onnx"
    rows = tmp_path / "rows.onnx"
    shutil.copyfile(fp32, rows)
    quantize.weight_only_int8(rows)
    tables = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(rows)).graph.initializer}
    int8 = [name for name, value in tables.items() if value.dtype == np.int8]
    largest = np.abs(tables[int8[0]].astype(np.int16)).max(1)
    assert len(int8) == 1 and tables[int8[0]].shape == (120, 16) and set(largest) == {0, 127}  # 0: the pad row
    assert tables[int8[0].replace("_int8", "_row_scale")].shape == (120, 1)

    student_dir = run_dir / "distill" / "student"
    model, config = load_student(student_dir)
    ids = student_input(student_dir, config)([t for t, _ in toy_rows[:300]])
    name = onnx_session(fp32).get_inputs()[0].name
    before = onnx_session(fp32).run(None, {name: ids})[0]
    after = onnx_session(rows).run(None, {name: ids})[0]
    assert np.abs(after - before).max() < 0.05 * np.abs(before).max()
    assert (after.argmax(1) == before.argmax(1)).mean() > 0.99
    table_bytes = 120 * 16 * 4
    assert fp32.stat().st_size - rows.stat().st_size > 0.75 * table_bytes - 120 * 4  # int8 rows, plus a scale per row

    recipe = quantize.RECIPES[-1]
    assert recipe.name == "int8-weights" and recipe.weights_only
    tables_only = tmp_path / "tables-only.onnx"
    quantize.quantize_int8(fp32, tables_only, [], recipe)
    np.testing.assert_array_equal(onnx_session(tables_only).run(None, {name: ids})[0], after)


def test_static_student_exports_one_lookup_and_no_mask(tmp_path, toy_rows):
    """The static student's graph looks each piece up once in a table with the piece weights folded in, and
    has no padding mask or piece count (`_StaticGraph`): the same logits as `forward`, padded or not, and int8's
    dequantized table is a constant that onnxruntime folds when it loads the model."""
    import onnx
    import torch

    from gendistill.compressor.export_stage import run_export
    from gendistill.compressor.student import load_student, student_input
    from gendistill.export.bundle import ExportSettings

    run_dir = make_student_run(tmp_path / "run", toy_rows, architecture="static", epochs=5)
    student_dir = run_dir / "distill" / "student"
    model, config = load_student(student_dir)
    ids = student_input(student_dir, config)([t for t, _ in toy_rows[:50]] + [""])  # the last row: all padding
    with torch.no_grad():
        lean, full = model.eval().onnx_module()(torch.from_numpy(ids)), model(torch.from_numpy(ids))
    np.testing.assert_allclose(lean.numpy(), full.numpy(), atol=1e-5)

    run_export(ExportSettings(quantize="int8"), run_dir)
    graph = onnx.load(str(run_dir / "bundle" / "model.onnx")).graph
    operations = [node.op_type for node in graph.node]
    assert operations.count("Gather") == 1 and "Equal" not in operations and len(operations) <= 12
    gather = next(node for node in graph.node if node.op_type == "Gather")
    producers = {output: node for node in graph.node for output in node.output}
    assert producers[gather.input[0]].op_type == "Mul"  # Cast(int8 table) * row scales, folded at load


def test_weight_only_int8_stores_convolution_kernels_per_output_channel(tmp_path, toy_rows):
    """A Kim-CNN's kernels go int8 too (one scale per output channel), so the weight-only fallback is about as
    small as the calibrated recipes; the arithmetic stays fp32, so its labels are fp32's."""
    import onnx
    from onnx import numpy_helper

    from gendistill.compressor.export_stage import run_export
    from gendistill.compressor.student import load_student, student_input
    from gendistill.export import quantize
    from gendistill.export.bundle import ExportSettings
    from gendistill.runtime.classifier import onnx_session

    run_dir = make_student_run(tmp_path / "run", toy_rows, architecture="kim-cnn", epochs=5)
    run_export(ExportSettings(quantize="none"), run_dir)
    fp32 = run_dir / "bundle" / "model.onnx"
    weights = tmp_path / "weights.onnx"
    quantize.quantize_int8(fp32, weights, [], quantize.RECIPES[-1])
    graph = onnx.load(str(weights)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    kernels = [name for name, value in values.items() if value.dtype == np.int8 and value.ndim == 3]
    convolutions = [n for n in graph.node if n.op_type == "Conv"]
    assert kernels and len(kernels) == len(convolutions)
    for name in kernels:  # every output channel uses the full int8 range (or is all zeros)
        assert set(np.abs(values[name].astype(np.int16)).reshape(len(values[name]), -1).max(1)) <= {0, 127}
        assert values[name.replace("_int8", "_channel_scale")].shape == (len(values[name]), 1, 1)
    fp32_kernels = [n.input[1] for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    assert fp32_kernels and not set(fp32_kernels) & set(values)  # no fp32 kernel is left
    student_dir = run_dir / "distill" / "student"
    model, config = load_student(student_dir)
    ids = student_input(student_dir, config)([t for t, _ in toy_rows[:300]])
    name = onnx_session(fp32).get_inputs()[0].name
    before, after = (onnx_session(path).run(None, {name: ids})[0] for path in (fp32, weights))
    assert np.abs(after - before).max() < 0.05 * np.abs(before).max() and (after.argmax(1) == before.argmax(1)).mean() > 0.99
    original = {i.name: i for i in onnx.load(str(fp32)).graph.initializer}
    quantized_floats = sum(numpy_helper.to_array(original[name]).size for name in fp32_kernels) + 120 * 16  # + the table
    assert fp32.stat().st_size - weights.stat().st_size > 0.7 * 3 * quantized_floats  # 4 bytes each became 1 (+ scales)


def test_a_bigru_exports_as_one_bidirectional_gru_that_reads_each_text_within_its_length(tmp_path):
    """The BiGRU's graph is written from its weights: one bidirectional GRU node fed the texts' lengths. It gives the
    PyTorch model's logits on a padded batch (an empty text included), in any opset the export may ask for."""
    import onnx
    import torch

    from gendistill.compressor.student import StudentConfig, build_student
    from gendistill.export.onnx_export import export_fp32
    from gendistill.runtime.classifier import onnx_session

    torch.manual_seed(0)
    model = build_student(StudentConfig(architecture="bigru", vocab_size=60, embed_dim=8, hidden=8, num_labels=3)).eval()
    ids = np.array([[3, 4, 5, 6, 7, 8, 9], [5, 6, 7, 0, 0, 0, 0], [0] * 7, [9, 9, 1, 2, 3, 4, 0]], dtype=np.int64)
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
    for opset in (18, 14):
        assert export_fp32(model, 5, tmp_path / f"{opset}.onnx", opset=opset) == opset
        graph = onnx.load(str(tmp_path / f"{opset}.onnx")).graph
        assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "sequence"]
        grus = [node for node in graph.node if node.op_type == "GRU"]
        assert len(grus) == 1 and len(grus[0].input) == 5  # sequence_lens given
        assert {a.name: a for a in grus[0].attribute}["direction"].s == b"bidirectional"
        assert len(graph.node) < 20
        logits = onnx_session(tmp_path / f"{opset}.onnx").run(None, {"input_ids": ids})[0]
        np.testing.assert_allclose(logits, expected, atol=1e-5)
        assert not np.allclose(logits[0], onnx_session(tmp_path / f"{opset}.onnx").run(None, {"input_ids": ids[:1, ::-1].copy()})[0][0])


def test_every_int8_recipe_stores_a_bigru_students_gru_weights_in_int8(tmp_path, toy_rows):
    """onnxruntime's quantizer leaves GRU nodes alone: every recipe, the weight-only one included, still ships their
    weights (W and R) as int8 with one scale per gate row, close to fp32."""
    import onnx
    from onnx import numpy_helper

    from gendistill.compressor.export_stage import run_export
    from gendistill.compressor.student import load_student, student_input
    from gendistill.export import quantize
    from gendistill.export.bundle import ExportSettings
    from gendistill.runtime.classifier import onnx_session

    run_dir = make_student_run(tmp_path / "run", toy_rows, architecture="bigru")
    run_export(ExportSettings(quantize="none"), run_dir)
    fp32 = run_dir / "bundle" / "model.onnx"
    student_dir = run_dir / "distill" / "student"
    _, config = load_student(student_dir)
    ids = student_input(student_dir, config)([t for t, _ in toy_rows[:300]])
    name = onnx_session(fp32).get_inputs()[0].name
    before = onnx_session(fp32).run(None, {name: ids})[0]
    for recipe in quantize.RECIPES:
        path = tmp_path / f"{recipe.name}.onnx"
        quantize.quantize_int8(fp32, path, [ids[:64], ids[64:128]], recipe)
        graph = onnx.load(str(path)).graph
        gru_weights = [numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("_int8") and len(i.dims) == 3]
        assert len(gru_weights) == 2 and all(w.dtype == np.int8 and w.shape[1] == 3 * config.hidden for w in gru_weights), recipe.name
        after = onnx_session(path).run(None, {name: ids})[0]
        assert (after.argmax(1) == before.argmax(1)).mean() > 0.95, recipe.name
    assert (tmp_path / "int8-weights.onnx").stat().st_size < 0.5 * fp32.stat().st_size
