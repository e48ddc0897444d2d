"""The whole pipeline, end to end, through the real CLI, on tiny models built in code."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gendistill.runtime.cli import main
from tiny_models import make_tiny_generator, make_tiny_teacher


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, toy_rows):
    root = tmp_path_factory.mktemp("models")
    texts = [t for t, _ in toy_rows]
    return make_tiny_teacher(root / "teacher", texts), make_tiny_generator(root / "generator", texts)


def tiny_args(models, *extra) -> list[str]:
    teacher, generator = models
    return [
        "--teacher", str(teacher), "--generator", str(generator), "--teacher-epochs", "2", "--teacher-lr", "1e-3",
        "--synthetic", "24", "--synthesis-batch", "8", "--max-new-tokens", "12", "--vocab-size", "150",
        "--student-epochs", "3", "--student-epoch-examples", "1000", "--max-length", "32", "--dev-size", "30", "--test-size", "30", *extra,
    ]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, toy_csv, tiny_models):
    """The reference run, with default export settings. Its few dozen texts outside calibration are too
    few to show int8 agrees with fp32, so it ends as a small real run does: with an fp32 bundle saying why."""
    run_dir = tmp_path_factory.mktemp("compress") / "run"
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, *tiny_args(tiny_models))
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def test_compress_writes_every_stage_and_the_report(finished_run):
    run_dir, output = finished_run
    for stage in ("data", "teacher", "generator", "synthesize", "annotate", "distill", "evaluate"):
        assert (run_dir / stage / "metrics.json").is_file(), stage
        assert (run_dir / stage / "settings.json").is_file(), stage
    assert not list(run_dir.glob("*.partial"))
    from gendistill.compressor.training import native_bf16

    teacher = json.loads((run_dir / "teacher" / "metrics.json").read_text())  # fine-tuned in bf16 where the CPU has it (auto)
    assert teacher["training_precision"] == ("bf16" if native_bf16() else "fp32")
    # The epoch kept is the first with the lowest dev cross-entropy (this tiny checkpoint has its own untrained head:
    # no epoch 0 to keep; a sentence-transformers folder's frozen start would be epoch 0).
    history = teacher["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all(h["dev_loss"] > 0 and 0 <= h["dev_accuracy"] <= 1 for h in history)
    assert teacher["best_epoch"] == min(history, key=lambda h: (h["dev_loss"], h["epoch"]))["epoch"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["labels"] == ["business", "sport", "tech"]
    for model in ("teacher", "student", "student_labeled_only"):
        assert 0.0 <= report[model]["test_accuracy"] <= 1.0
        assert 0.0 <= report[model]["test_macro_f1"] <= 1.0
        assert report[model]["params"] > 0
    assert report["synthetic"]["requested"] == 24 and 0 < report["synthetic"]["kept"] <= 24
    assert report["synthetic"]["distilled"] == report["synthetic"]["kept"]  # --keep-confident 10000 keeps all of them
    # --student auto resolved by the teacher's input length, and the report names what it picked.
    teacher_length = json.loads((run_dir / "teacher" / "settings.json").read_text())["max_length"]
    picked = "bigru" if teacher_length <= 128 else "static"
    assert report["student"]["architecture"] == picked
    assert report["student_labeled_only"]["architecture"] == "static"  # --labeled-only-student's default
    assert f"| student (generation-distillation, {picked}) |" in (run_dir / "report.md").read_text()
    # What tells a user whether synthesis is on-topic, each beside the same figure on real texts.
    near = report["synthetic"]["nearest_training_similarity"]
    assert 0 <= near["synthetic"] <= 1 and 0 < near["dev"] <= 1
    assert 0 <= report["synthetic"]["synthetic_confident_share"] <= 1 and 0 <= report["synthetic"]["test_confident_share"] <= 1
    assert "Median TF-IDF cosine to the nearest training text" in (run_dir / "report.md").read_text()
    # The peers a user compares against, on the same split, and the teacher's calibration.
    assert 0.0 < report["tfidf_svm"]["test_accuracy"] <= 1.0 and report["tfidf_svm"]["bytes"] > 0
    assert 0.0 < report["majority_class_test_accuracy"] < 1.0
    assert 0.0 <= report["teacher"]["reliability"]["ece"] <= 1.0 and report["teacher"]["temperature"] > 0
    assert "TF-IDF + linear SVM" in (run_dir / "report.md").read_text() and "most frequent test class" in (run_dir / "report.md").read_text()
    assert set(report["seconds"]) >= {"data", "teacher", "generator", "synthesize", "annotate", "distill", "evaluate", "total"}
    assert "teacher" in (run_dir / "report.md").read_text()
    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "student (gen-distill)" in output and "bundle (fp32 ONNX + tokenizer)" in output  # its size: the download, both files


def test_compress_ends_with_a_verified_bundle(finished_run):
    from gendistill.runtime.bundle import load_manifest

    run_dir, _ = finished_run
    manifest = load_manifest(run_dir / "bundle")
    report = json.loads((run_dir / "report.json").read_text())
    assert manifest["labels"] == report["labels"]
    assert manifest["model"]["precision"] == report["bundle"]["precision"] == "fp32"
    reason = report["bundle"]["int8_refused"]
    assert reason == manifest["metrics"]["int8_refused"] and reason.endswith("too few to show that they agree (at least 437 are needed)")
    assert f"The bundle is fp32 because {reason}." in (run_dir / "report.md").read_text()
    shipped = "labeled_only" if report["shipped"]["student"] == "labeled-only" else "student"  # each student has its tokenizer
    assert (run_dir / "bundle" / "tokenizer.model").read_bytes() == (run_dir / "distill" / shipped / "tokenizer.model").read_bytes()
    assert "export" in report["seconds"]
    # The report's size of the bundle names the tokenizer shipped beside the model.
    from gendistill.runtime.formatting import size

    tokenizer_bytes = (run_dir / "bundle" / "tokenizer.model").stat().st_size
    assert report["bundle"]["tokenizer_bytes"] == tokenizer_bytes
    assert f"| {size(report['bundle']['bytes']['fp32'])} + {size(tokenizer_bytes)} tokenizer |" in (run_dir / "report.md").read_text()


def test_few_transfer_texts_are_annotated_by_torch_without_checking_a_faster_engine(finished_run):
    """24 synthetic texts: a faster engine would save well under a second on them, its check (the sample and dev + test
    run through it) costs more, so `auto` annotates in fp32 torch at once and says why."""
    from gendistill.compressor.annotate import ENGINE_SPEEDUP, TRANSFER_CHECK_TEXTS, expected_speedup, worth_checking

    run_dir, _ = finished_run
    annotate = json.loads((run_dir / "annotate" / "metrics.json").read_text())
    assert annotate["engine"] == "torch"
    labeled = sum(len((run_dir / "data" / f"{split}.jsonl").read_text().splitlines()) for split in ("dev", "test"))
    reason = f"24 transfer texts are too few to repay checking a faster engine on {24 + labeled} texts (at best {expected_speedup():g}x fp32 torch on this CPU)"
    assert annotate["engine_check"] == {"skipped": reason}
    assert reason in (run_dir / "report.md").read_text()
    # The rule: the check runs the sample (500) and dev + test (here the demo's 2,200) through the engine; at 1.9x fp32
    # torch's speed (bfloat16) it pays for itself beyond about 1.1x those texts, at int8's 1.35x beyond about 3x, and
    # where int8 has no dot-product instructions the demo's 10,000 synthetic texts cannot repay it.
    checked = TRANSFER_CHECK_TEXTS + 2_200
    assert not worth_checking(3_000, checked, 1.9) and worth_checking(3_100, checked, 1.9) and worth_checking(10_000, checked, 1.9)
    assert not worth_checking(7_700, checked, 1.35) and worth_checking(10_000, checked, 1.35)
    assert not worth_checking(10_000, checked, ENGINE_SPEEDUP["onnx-int8 without int8 dot products"])
    assert worth_checking(80_000, checked, ENGINE_SPEEDUP["onnx-int8 without int8 dot products"])


def test_splits_follow_per_class_and_never_overlap(finished_run):
    run_dir, _ = finished_run
    rows = {s: [json.loads(l) for l in (run_dir / "data" / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "dev", "test", "unlabeled")}
    assert len(rows["train"]) == 60
    assert {r["label"]: 0 for r in rows["train"]}.keys() == {"business", "sport", "tech"}
    texts = [{r["text"] for r in part} for part in rows.values()]
    assert sum(map(len, texts)) == len(set().union(*texts))


def test_synthetic_texts_are_unique_and_not_training_copies(finished_run):
    run_dir, _ = finished_run
    synthetic = [json.loads(l)["text"] for l in (run_dir / "synthesize" / "synthetic.jsonl").read_text().splitlines()]
    train = {json.loads(l)["text"].lower() for l in (run_dir / "data" / "train.jsonl").read_text().splitlines()}
    assert all(t.strip() for t in synthetic)
    assert len({" ".join(t.lower().split()) for t in synthetic}) == len(synthetic)
    assert not train & {t.lower() for t in synthetic}
    import numpy as np

    probabilities = np.load(run_dir / "annotate" / "synthetic.npy")
    assert probabilities.shape == (len(synthetic), 3)


def test_rerun_skips_finished_stages(finished_run, tiny_models, toy_csv):
    run_dir, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("*/metrics.json")}
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, *tiny_args(tiny_models))
    assert result.exit_code == 0, result.output
    assert before == {p: p.stat().st_mtime_ns for p in run_dir.glob("*/metrics.json")}


def test_python_api_is_the_same_pipeline(finished_run, tiny_models, toy_csv):
    """`gendistill.compress` takes the options by their Python names and returns the report; on a finished
    run with the same settings it re-makes nothing."""
    import gendistill

    run_dir, _ = finished_run
    args = tiny_args(tiny_models)
    settings = {args[i].lstrip("-").replace("-", "_"): args[i + 1] for i in range(0, len(args), 2)}
    settings = {"teacher": settings.pop("teacher"), "generator": settings.pop("generator"),
                **{k: float(v) if "lr" in k else int(v) for k, v in settings.items()}}
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("*/metrics.json")}
    report = gendistill.compress(str(toy_csv), run_dir, per_class=20, **settings)
    assert report == json.loads((run_dir / "report.json").read_text())
    assert before == {p: p.stat().st_mtime_ns for p in run_dir.glob("*/metrics.json")}


def test_changed_settings_are_refused_without_from(finished_run, tiny_models, toy_csv):
    run_dir, _ = finished_run
    before = (run_dir / "distill" / "metrics.json").read_bytes()
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, *tiny_args(tiny_models), "--lambda", "0.9")
    assert result.exit_code == 2
    assert "--from distill" in result.output
    assert (run_dir / "distill" / "metrics.json").read_bytes() == before


def _compress_settings(*args):
    """The CompressSettings `gendistill compress ARGS` would run with."""
    from gendistill.compressor.commands import compress
    from gendistill.compressor.pipeline import build_settings

    options = dict(compress.make_context("compress", [str(a) for a in args]).params)
    for name in ("run_dir", "from_stage", "force"):
        options.pop(name)
    return build_settings(options.pop("data"), **options)


def test_redo_changed_remakes_the_changed_stage_and_what_is_built_on_it(finished_run, tiny_models, toy_csv):
    """What the benchmark's cache of runs uses: new student settings re-make distill onward, nothing before."""
    from gendistill.compressor.pipeline import plan

    run_dir = finished_run[0]
    settings = _compress_settings(toy_csv, "--out", run_dir, "--per-class", 20, *tiny_args(tiny_models), "--lambda", "0.9")
    steps = plan(settings, run_dir, None, False, redo_changed=True)
    assert [stage for stage, reuse in steps if not reuse] == ["distill", "evaluate", "export"]


def test_a_student_auto_chose_by_an_older_rule_is_reused_by_compress_and_remade_by_a_cache(finished_run, tiny_models, toy_csv, tmp_path):
    """A distill stage whose auto choices an older rule made (here: the Kim-CNN, where auto now picks the bigru)
    satisfies `compress` (a user's run is not re-made by an upgrade) but not the benchmark's or the demo's cache of
    today's defaults (redo_changed), which re-make it and what is built on it."""
    import shutil

    from gendistill.compressor.pipeline import plan

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    settings = _compress_settings(toy_csv, "--out", run_dir, "--per-class", 20, *tiny_args(tiny_models))

    def remade(**kwargs):
        return [stage for stage, reuse in plan(settings, run_dir, None, False, **kwargs) if not reuse]

    assert "distill" not in remade(redo_changed=True)
    saved = json.loads((run_dir / "distill" / "settings.json").read_text())
    assert saved["architecture"] == "bigru"
    (run_dir / "distill" / "settings.json").write_text(json.dumps({**saved, "architecture": "kim-cnn"}))
    assert "distill" not in remade()
    assert remade(redo_changed=True)[:2] == ["distill", "evaluate"]


def test_the_demo_remakes_stages_made_with_other_settings_and_compress_refuses(tmp_path, monkeypatch, toy_csv):
    """`make demo` after an upgrade that changed a default re-makes what changed (the demo owns its run dir);
    `compress` on a user's run dir refuses and names the difference (test_changed_settings_are_refused_without_from)."""
    import gendistill.compressor.api as api
    from gendistill.runtime.errors import GendistillError

    calls = []

    def record(data, out, **kwargs):
        calls.append(kwargs["redo_changed"])
        raise GendistillError("recorded")

    monkeypatch.setattr(api, "compress", record)
    assert invoke("demo", "--out", tmp_path / "demo").exit_code == 2
    assert invoke("compress", toy_csv, "--out", tmp_path / "run").exit_code == 2
    assert calls == [True, False]


def test_from_stage_reruns_that_stage_and_later(tmp_path, finished_run, tiny_models, toy_csv):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)
    teacher_before = (run_dir / "teacher" / "metrics.json").read_bytes()
    distill_before = (run_dir / "distill" / "metrics.json").read_bytes()
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--from", "distill", *tiny_args(tiny_models, "--lambda", "0.9"),
                    "--keep-confident", 10)
    assert result.exit_code == 0, result.output
    assert (run_dir / "teacher" / "metrics.json").read_bytes() == teacher_before
    assert (run_dir / "distill" / "metrics.json").read_bytes() != distill_before
    assert json.loads((run_dir / "distill" / "settings.json").read_text())["lam"] == 0.9
    assert json.loads((run_dir / "distill" / "metrics.json").read_text())["synthetic_texts_distilled"] == 10
    assert "The student learned from the 10 of them the teacher is surest of" in (run_dir / "report.md").read_text()


def test_from_teacher_keeps_the_generator_and_its_synthetic_texts(tmp_path, finished_run, tiny_models, toy_csv):
    """The generator does not read the teacher: a new teacher re-annotates the same synthetic texts."""
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)
    before = {stage: (run_dir / stage / "metrics.json").read_bytes() for stage in ("data", "teacher", "generator", "synthesize", "annotate", "distill")}
    synthetic = (run_dir / "synthesize" / "synthetic.jsonl").read_bytes()
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--from", "teacher", *tiny_args(tiny_models))
    assert result.exit_code == 0, result.output
    after = {stage: (run_dir / stage / "metrics.json").read_bytes() for stage in before}
    assert [s for s in before if before[s] == after[s]] == ["data", "generator", "synthesize"]
    assert (run_dir / "synthesize" / "synthetic.jsonl").read_bytes() == synthetic
    teacher_id = json.loads(after["teacher"])["stage_id"]
    assert json.loads((run_dir / "annotate" / "settings.json").read_text())["upstream"]["teacher"] == teacher_id
    # and a second run with the same settings re-makes nothing
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, *tiny_args(tiny_models))
    assert result.exit_code == 0, result.output
    assert after == {stage: (run_dir / stage / "metrics.json").read_bytes() for stage in before}


def test_interrupted_synthesis_resumes_from_its_shards(tmp_path, finished_run, tiny_models, toy_csv, monkeypatch):
    """Kill synthesis after its first shard; the re-run keeps that shard and finishes."""
    from conftest import interrupt_second_shard

    run_dir = tmp_path / "run"
    restore = interrupt_second_shard(monkeypatch)
    args = ["compress", toy_csv, "--out", run_dir, "--per-class", 20, *tiny_args(tiny_models, "--synthetic", "40", "--synthesis-shard", "16", "--no-export")]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 130
    shards = list((run_dir / "synthesize.partial").glob("shard-*.jsonl"))
    assert len(shards) == 1
    first_shard = shards[0].read_text()
    teacher_before = (run_dir / "teacher" / "metrics.json").read_bytes()
    restore()
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert (run_dir / "teacher" / "metrics.json").read_bytes() == teacher_before
    synthetic = (run_dir / "synthesize" / "synthetic.jsonl").read_text()
    first_texts = [json.loads(l)["text"] for l in first_shard.splitlines()]
    assert json.loads(synthetic.splitlines()[0])["text"] == next(t for t in first_texts if t.strip())


def test_interrupted_annotation_resumes_from_its_chunks(tmp_path, finished_run, tiny_models, toy_csv, monkeypatch):
    """Annotation saves the transfer texts' logits a chunk at a time: interrupted during its second chunk, the
    re-run annotates only the chunks missing, and the logits equal an uninterrupted run's."""
    import shutil

    from gendistill.compressor import annotate

    monkeypatch.setattr(annotate, "CHUNK_TEXTS", 8)  # the 24 synthetic texts in 3 chunks
    real, calls = annotate.teacher_logits, []

    def dying(model, tokenizer, texts, *args, **kwargs):
        calls.append(kwargs.get("desc"))
        if kwargs.get("desc") == "annotate synthetic (torch) 2/3" and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return real(model, tokenizer, texts, *args, **kwargs)

    interrupted = []
    monkeypatch.setattr(annotate, "teacher_logits", dying)
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    args = ["compress", toy_csv, "--out", run_dir, "--per-class", 20, "--from", "annotate", *tiny_args(tiny_models, "--no-export")]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 130 and interrupted
    assert sorted(p.name for p in (run_dir / "annotate.partial").glob("*-chunk-*.npy")) == ["synthetic-chunk-00000.npy"]
    calls.clear()
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert [c for c in calls if c.startswith("annotate synthetic")] == ["annotate synthetic (torch) 2/3", "annotate synthetic (torch) 3/3"]
    for split in ("synthetic", "train", "dev", "test"):
        np.testing.assert_allclose(np.load(run_dir / "annotate" / f"{split}.npy"), np.load(finished_run[0] / "annotate" / f"{split}.npy"),
                                   rtol=1e-5, atol=1e-5)
    assert not list((run_dir / "annotate").glob("*chunk*"))  # the finished stage keeps only its logits
    metrics = json.loads((run_dir / "annotate" / "metrics.json").read_text())
    assert metrics["resumed_texts"] == 8 and metrics["engine"] == "torch"


def test_annotation_chunks_of_other_settings_or_another_engine_are_discarded(tmp_path, monkeypatch):
    """Chunks are reused only by a run with the same settings and upstream stages and the same engine, int8 recipe
    included: logits of two engines are never mixed in one stage."""
    from gendistill.compressor import annotate

    monkeypatch.setattr(annotate, "CHUNK_TEXTS", 2)
    marker, texts, calls = {"settings": {"batch_size": 64}, "upstream": {"synthesize": "a"}}, ["t"] * 5, []

    def logits_of(part, desc):
        calls.append(len(part))
        return np.full((len(part), 2), len(calls), dtype=np.float32)

    def run(marker, engine):
        chunks = annotate.Chunks(tmp_path, marker)
        chunks.use_engine(engine, {"passed": True})
        calls.clear()
        return chunks.annotate("synthetic", texts, logits_of, "annotate"), list(calls)

    int8 = {"engine": "onnx-int8", "recipe": "ffn-fp32"}
    first, made = run(marker, int8)
    assert made == [2, 2, 1] and annotate.Chunks(tmp_path, marker).engine == int8
    again, made = run(marker, int8)
    assert made == [] and np.array_equal(again, first)  # every chunk read back
    _, made = run(marker, {"engine": "onnx-int8", "recipe": "ffn-output-fp32"})
    assert made == [2, 2, 1]  # another recipe: made anew
    _, made = run({**marker, "upstream": {"synthesize": "b"}}, {"engine": "onnx-int8", "recipe": "ffn-output-fp32"})
    assert made == [2, 2, 1]  # other synthetic texts: made anew
    annotate.Chunks(tmp_path, marker).remove()
    assert list(tmp_path.iterdir()) == []


def redistill(tmp_path, finished_run, toy_csv, tiny_models, *extra):
    """A copy of the reference run, re-made from the distill stage with other student settings."""
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--from", "distill", *tiny_args(tiny_models, *extra))
    assert result.exit_code == 0, result.output
    return run_dir


def test_soft_and_hard_labels_and_res_cnn(tmp_path, finished_run, toy_csv, tiny_models):
    run_dir = redistill(tmp_path, finished_run, toy_csv, tiny_models, "--teacher-labels", "hard", "--student", "res-cnn", "--embeddings", "random")
    config = json.loads((run_dir / "distill" / "student" / "student.json").read_text())
    assert config["architecture"] == "res-cnn"


def test_a_bundle_of_an_earlier_student_is_not_reported_after_a_rerun_without_export(tmp_path, finished_run, toy_csv, tiny_models):
    run_dir = redistill(tmp_path, finished_run, toy_csv, tiny_models, "--no-export")
    report = json.loads((run_dir / "report.json").read_text())
    assert "bundle" not in report and "export" not in report["seconds"]
    assert "Exported bundle" not in (run_dir / "report.md").read_text()
    assert (run_dir / "bundle" / "model.onnx").is_file()  # left on disk as it was, only not presented as this run's


def test_already_finetuned_teacher_skips_training(tmp_path, finished_run, toy_csv, tiny_models):
    teacher = finished_run[0] / "teacher" / "model"
    run_dir = tmp_path / "run"
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--teacher-model", teacher, "--synthetic", 0,
                    *tiny_args(tiny_models, "--synthetic", "0", "--no-export"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "teacher" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 0 and metrics["history"] == []
    assert not (run_dir / "generator").exists()


def test_bpemb_from_local_files(tmp_path, finished_run, toy_csv, tiny_models):
    """BPEmb as the paper uses it: its own sentencepiece model and word2vec vectors, given as local files."""
    import shutil

    import numpy as np
    import sentencepiece as spm

    from gendistill.compressor.student import train_tokenizer

    bpemb_model = train_tokenizer([t for t, _ in __import__("conftest").toy_corpus()], tmp_path / "en.wiki.bpe.vs200", 200)
    sp = spm.SentencePieceProcessor(model_file=str(bpemb_model))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    rng = np.random.RandomState(0)
    vectors = tmp_path / "en.wiki.bpe.vs200.d16.w2v.txt"
    vectors.write_text(f"{len(pieces)} 16\n" + "".join(f"{p} {' '.join(f'{x:.4f}' for x in rng.randn(16))}\n" for p in pieces), encoding="utf-8")
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--from", "distill",
                    *tiny_args(tiny_models, "--embeddings", "bpemb", "--bpemb-model", bpemb_model, "--bpemb-vectors", vectors,
                              ))
    assert result.exit_code == 0, result.output
    student = run_dir / "distill" / "student"
    assert (student / "tokenizer.model").read_bytes() == bpemb_model.read_bytes()
    config = json.loads((student / "student.json").read_text())
    assert config["digits_to_zero"] and config["lowercase"]  # BPEmb's preprocessing
    metrics = json.loads((run_dir / "distill" / "metrics.json").read_text())
    assert metrics["embedding_coverage"] > 0.9
    bundle = json.loads((run_dir / "bundle" / "bundle.json").read_text())
    assert bundle["preprocessing"]["digits_to_zero"] is True


def test_bpemb_without_files_offline_is_one_sentence(tmp_path, finished_run, toy_csv, tiny_models):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)
    result = CliRunner().invoke(main, [str(a) for a in ["compress", toy_csv, "--out", run_dir, "--per-class", 20, "--from", "distill",
                                                        *tiny_args(tiny_models, "--embeddings", "bpemb")]])
    assert result.exit_code == 2 and "--bpemb-model" in result.output


def test_real_unlabeled_texts_from_a_file_are_transfer_text(tmp_path, toy_csv, toy_rows, tiny_models):
    """--unlabeled FILE: deduplicated, texts of train/dev/test dropped, labeled by the teacher, distilled on."""
    from conftest import toy_corpus

    fresh = [t for t, _ in toy_corpus(40, seed=7) if t not in {r[0] for r in toy_rows}]
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(fresh + fresh[:5] + [t for t, _ in toy_rows[:30]]) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--unlabeled", unlabeled,
                    *tiny_args(tiny_models, "--synthetic", "0", "--no-export"))
    assert result.exit_code == 0, result.output
    kept = [json.loads(l)["text"] for l in (run_dir / "data" / "unlabeled.jsonl").read_text().splitlines()]
    held = {json.loads(l)["text"] for s in ("train", "dev", "test") for l in (run_dir / "data" / f"{s}.jsonl").read_text().splitlines()}
    assert kept == list(dict.fromkeys(t for t in fresh + fresh[:5] + [t for t, _ in toy_rows[:30]] if t not in held))
    dropped = [t for t, _ in toy_rows[:30] if t in held]
    assert dropped and not set(dropped) & set(kept)
    data = json.loads((run_dir / "data" / "metrics.json").read_text())
    assert data["overlap_dropped"]["unlabeled_file"] == len(fresh) + 5 + 30 - len(kept)
    import numpy as np

    assert np.load(run_dir / "annotate" / "unlabeled.npy").shape == (len(kept), 3)
    distill = json.loads((run_dir / "distill" / "metrics.json").read_text())
    assert distill["training_texts"] == 60 + len(kept)
    assert distill["shipped"] in ("generation-distillation", "labeled-only")
    report = json.loads((run_dir / "report.json").read_text())
    assert report["shipped"]["student"] == distill["shipped"] and 0 < report["majority_class_test_accuracy"] <= 1
    assert report["user_unlabeled"] == {"file": str(unlabeled), "texts": len(kept)}
    assert f"Real unlabeled texts (`--unlabeled {unlabeled}`): {len(kept)}," in (run_dir / "report.md").read_text()


def test_an_unlabeled_file_of_only_labeled_texts_is_one_sentence(tmp_path, toy_csv, toy_rows):
    from gendistill.compressor.data import DataSettings, run_data
    from gendistill.runtime.errors import GendistillError

    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(t.upper() for t, _ in toy_rows) + "\n", encoding="utf-8")  # the same texts, other case
    settings = DataSettings(source=str(toy_csv), dev_size=30, test_size=30, unlabeled=str(unlabeled))  # every text is labeled
    with pytest.raises(GendistillError, match="holds no texts besides those of the labeled data"):
        run_data(settings, tmp_path / "run")
    assert not (tmp_path / "run" / "data").exists()


def test_static_student_on_vectors_from_the_teachers_outputs(tmp_path, finished_run, toy_csv, tiny_models):
    run_dir = redistill(tmp_path, finished_run, toy_csv, tiny_models, "--student", "static", "--embeddings", "teacher-output",
                        "--student-embed-dim", "16")
    config = json.loads((run_dir / "distill" / "student" / "student.json").read_text())
    assert config["architecture"] == "static" and config["embed_dim"] == 16
    distill = json.loads((run_dir / "distill" / "metrics.json").read_text())
    assert distill["embedding_coverage"] > 0.9  # every normal piece got a vector from the teacher's encoder
    assert (run_dir / "bundle" / "model.onnx").is_file()


def _wordpiece_teacher(directory, tokens: list[str], unk: str = "[UNK]"):
    """A one-layer BERT teacher (hidden size 8) whose WordPiece vocabulary is BERT's five special tokens, then `tokens`."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir()
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", unk, "[CLS]", "[SEP]", "[MASK]", *tokens]) + "\n")
    BertTokenizerFast(vocab=str(directory / "vocab.txt"), unk_token=unk).save_pretrained(directory)
    BertModel(BertConfig(vocab_size=len(tokens) + 5, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)).save_pretrained(directory)
    return directory


def test_the_teachers_vocabulary_cuts_words_as_the_teacher_does_and_maps_each_piece_to_one_row(tmp_path):
    """--student-vocabulary teacher: the student's pieces are the teacher's wordpieces (word starts marked, "##"
    dropped), the most frequent first, then the rest of the teacher's while there is room; characters seen at least
    MIN_CHARACTER_COUNT times spell out what they do not cover, rarer ones read as <unk>; each piece's initial vector
    is one row of the teacher's table; and the runtime still tokenizes word by word with sentencepiece's own ids."""
    import sentencepiece as spm

    from gendistill.compressor.embeddings import teacher_vectors
    from gendistill.compressor.student import teacher_vocabulary_tokenizer
    from gendistill.runtime.preprocess import InputSpec, StudentInput

    words = ["un", "##fun", "##ny", "fun", "good", "movie", "bad", ",", "!", "'", "t", "don"]
    teacher = _wordpiece_teacher(tmp_path / "teacher", [*words, *"abcdefghijklmnopqrstuvwxyz"])
    texts = ["Unfunny movie, good!", "a good movie", "don't", "good good fun", "zq"] * 3 + ["good \u0436\u0436"]
    path = teacher_vocabulary_tokenizer(texts, tmp_path / "tokenizer", 40, teacher)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert sp.encode("unfunny movie, good!", out_type=str) == ["\u2581un", "fun", "ny", "\u2581movie", ",", "\u2581good", "!"]
    assert sp.encode("don't", out_type=str) == ["\u2581don", "'", "t"]
    assert sp.encode("zq", out_type=str) == ["\u2581", "z", "q"]  # "zq" is [UNK] to the teacher: spelt out (3 times: MIN_CHARACTER_COUNT)
    assert sp.encode("\u0436\u0436") == [sp.piece_to_id("\u2581"), sp.unk_id()]  # seen twice: no piece, one <unk>
    assert sp.encode("bad fun", out_type=str) == ["\u2581bad", "\u2581fun"]  # never in the texts: room left is the teacher's
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert pieces[:4] == ["<pad>", "<unk>", "\u2581good", "\u2581movie"]  # the most frequent first (good: 12 times, movie: 6)
    vectors, coverage = teacher_vectors(sp, teacher, 4)
    assert coverage == (len(pieces) - 3) / len(pieces) and vectors.shape == (len(pieces), 4)  # all but <pad>, <unk>, a bare mark
    inputs = StudentInput.load(path, InputSpec(max_length=32))
    assert inputs.by_word and inputs.encode(["unfunny movie, good!"])[0] == sp.encode("unfunny movie, good!")


def test_the_teachers_vocabulary_loads_when_texts_spell_a_piece_it_already_has(tmp_path):
    """A text holding sentencepiece's own word mark ("\u2581", as one of 80,000 sampled texts did) or a word the teacher
    cuts into a special token's spelling ("a<unk>") must not define a piece twice: sentencepiece refuses such a model
    ("\u2581 is already defined"), which stopped a benchmark seed after its annotation."""
    import sentencepiece as spm
    from transformers import BertTokenizerFast

    from gendistill.compressor.student import teacher_vocabulary_tokenizer
    from gendistill.runtime.preprocess import InputSpec, StudentInput, normalize

    teacher = _wordpiece_teacher(tmp_path / "teacher", ["good", "movie", "a", "x", "y"], unk="<unk>")
    assert BertTokenizerFast.from_pretrained(teacher).tokenize("a<unk>") == ["a", "<unk>"]
    texts = ["a<unk> movie", "good \u2581 movie", "x\u2581y good"] * 3
    path = teacher_vocabulary_tokenizer(texts, tmp_path / "tokenizer", 40, teacher)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert len(pieces) == len(set(pieces)) and pieces[:2] == ["<pad>", "<unk>"]
    inputs = StudentInput.load(path, InputSpec(max_length=32))
    for text in texts[:3]:
        assert inputs.encode([text])[0] == sp.encode(normalize(text, True, False))
    assert sp.encode(normalize(texts[1], True, False), out_type=str) == ["\u2581good", "\u2581movie"]


def test_a_word_cuts_the_same_after_any_prefix_when_two_cuts_score_the_same(tmp_path):
    """Log-frequency scores tie: "dilem" cuts as dil + em (2 x 2 times) or di + lem (4 x 1). sentencepiece sums a path's
    scores in float32, so with the tie the running sum's rounding picked one cut after some prefixes and the other
    after others, while the runtime (word by word, through its cache) always took the word's cut alone: the runtime
    and the browser (whole texts) then gave different ids for the same text. With scores on a grid, never."""
    import sentencepiece as spm

    from gendistill.compressor.student import teacher_vocabulary_tokenizer
    from gendistill.runtime.preprocess import InputSpec, StudentInput

    teacher = _wordpiece_teacher(tmp_path / "teacher", ["di", "dil", "##lem", "##em", "##x", "a", "the", "film", "good", *"bcdefghijklmnopqrstuvwyz"])
    texts = ["dilem the film", "dilem good", "dix", "dix a", "dix", "dix", "alem"] + ["the film good"] * 7
    path = teacher_vocabulary_tokenizer(texts, tmp_path / "tokenizer", 60, teacher)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    inputs = StudentInput.load(path, InputSpec(max_length=4096))
    assert inputs.by_word
    differ = [k for k in range(400) if inputs.encode([text := " ".join(["the film good"] * k + ["dilem"])])[0] != sp.encode(text)]
    assert differ == []  # the scores before the grid: 115 of these 400 prefixes


def test_a_bigru_on_the_teachers_vocabulary_ships_a_verified_bundle(tmp_path, finished_run, toy_csv, tiny_models):
    import sentencepiece as spm

    run_dir = redistill(tmp_path, finished_run, toy_csv, tiny_models, "--student", "bigru", "--student-vocabulary", "teacher")
    assert json.loads((run_dir / "distill" / "settings.json").read_text())["vocabulary"] == "teacher"
    teacher_vocab = set((tiny_models[0] / "vocab.txt").read_text().split())
    sp = spm.SentencePieceProcessor(model_file=str(run_dir / "distill" / "student" / "tokenizer.model"))
    words = [sp.id_to_piece(i).lstrip("\u2581") for i in range(2, sp.get_piece_size())]
    assert [w for w in words if w not in teacher_vocab and len(w) > 1] == []  # the teacher's words, and characters to spell
    assert sum(len(w) > 1 for w in words) > 30
    # The labeled-only student (static) reads its own architecture's pieces: a BPE model trained on the same texts.
    from gendistill.compressor.distill import DistillSettings, labeled_only_settings

    assert labeled_only_settings(DistillSettings(architecture="bigru", vocabulary="teacher")).vocabulary == "trained"
    assert labeled_only_settings(DistillSettings(architecture="bigru", vocabulary="teacher", labeled_only_student="same")).vocabulary == "teacher"
    labeled_only = spm.SentencePieceProcessor(model_file=str(run_dir / "distill" / "labeled_only" / "tokenizer.model"))
    assert labeled_only.get_piece_size() != sp.get_piece_size() or labeled_only.id_to_piece(5) != sp.id_to_piece(5)
    from gendistill.runtime.classifier import Classifier

    classifier = Classifier.load(run_dir / "bundle")  # the runtime reads it; its golden file (the export's check) holds
    golden = [json.loads(line) for line in (run_dir / "bundle" / "golden.jsonl").read_text(encoding="utf-8").splitlines()]
    assert classifier.encode([row["text"] for row in golden]) == [row["ids"] for row in golden]


def _nmt_nfkc_tokenizer(texts, path):
    """A sentencepiece BPE model trained on `texts` with its full, default nmt_nfkc rules (as `train_tokenizer` before
    `slim_normalizer`)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, model_type="bpe", vocab_size=120, pad_id=0, unk_id=1,
                                   bos_id=-1, eos_id=-1, hard_vocab_limit=False, minloglevel=2, num_threads=1)
    path.write_bytes(model.getvalue())
    return path


def test_charsmap_rules_compile_back_to_the_same_bytes(tmp_path, toy_rows):
    """The rules read out of sentencepiece's own 240 kB nmt_nfkc map, compiled again by sentencepiece, give that map back
    byte for byte: the reader lists every rule and nothing else."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    from gendistill.compressor.student import charsmap_rules, compile_normalizer

    proto = pb.ModelProto()
    proto.ParseFromString(_nmt_nfkc_tokenizer([t for t, _ in toy_rows], tmp_path / "full.model").read_bytes())
    charsmap = proto.normalizer_spec.precompiled_charsmap
    rules = charsmap_rules(charsmap)
    assert len(charsmap) > 200_000 and len(rules) > 200_000
    assert rules["\uff41"] == "a" and rules["e\u0301"] == "\u00e9" and rules["\x01"] == ""  # fullwidth a; e + acute; a control character
    assert compile_normalizer(rules).precompiled_charsmap == charsmap


def test_slimmed_normalizer_gives_every_id_of_the_full_one(tmp_path, toy_rows):
    """A tokenizer's rules slimmed to those that can change its ids: the same ids as the full nmt_nfkc rules on every
    rule's source alone, between letters, twice in a row, and on random mixes of sources, targets, the model's own
    characters and spaces; in under a quarter of the bytes. Dropping each rule whose two sides hold no character of
    a piece, without the closure over shorter rules, changed the ids of 5,678 sources on the demo's tokenizer."""
    import random

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    from gendistill.compressor.student import charsmap_rules, slim_normalizer, train_tokenizer

    texts = [t for t, _ in toy_rows] + ["Café naïve résumé, ｆｕｌｌ width and ﬁne ligatures."]
    full_path = _nmt_nfkc_tokenizer(texts, tmp_path / "full.model")
    proto = pb.ModelProto()
    proto.ParseFromString(full_path.read_bytes())
    rules = charsmap_rules(proto.normalizer_spec.precompiled_charsmap)
    slim_normalizer(proto)
    assert proto.normalizer_spec.name == "user_defined" and len(proto.normalizer_spec.precompiled_charsmap) < 240_007 / 4
    (tmp_path / "slim.model").write_bytes(proto.SerializeToString())
    full, slim = (spm.SentencePieceProcessor(model_file=str(tmp_path / name)) for name in ("full.model", "slim.model"))
    differ = [source for source in rules if any(full.encode(text) != slim.encode(text) for text in (source, f"a{source}b", source + source))]
    assert differ == []
    rng = random.Random(0)
    sources, targets = list(rules), list(rules.values())
    characters = sorted({c for i in range(full.get_piece_size()) for c in full.id_to_piece(i)})
    mixes = ["".join(rng.choice((rng.choice(sources), rng.choice(targets), rng.choice(characters), " ")) for _ in range(rng.randint(1, 8)))
             for _ in range(20_000)]
    assert [text for text in mixes if full.encode(text) != slim.encode(text)] == []
    # The pipeline's tokenizers are slimmed.
    built = pb.ModelProto()
    built.ParseFromString(train_tokenizer(texts, tmp_path / "built", vocab_size=120).read_bytes())
    assert built.normalizer_spec.name == "user_defined"


def _toy_student(tmp_path, toy_rows, count=100, num_labels=2):
    """The first `count` toy texts, a tiny static student's config and input over a tokenizer trained on them, random vectors."""
    import numpy as np

    from gendistill.compressor.student import StudentConfig, student_input, train_tokenizer

    texts = [t for t, _ in toy_rows[:count]]
    train_tokenizer(texts, tmp_path / "tokenizer", vocab_size=120)
    config = StudentConfig(architecture="static", vocab_size=120, embed_dim=8, hidden=8, num_labels=num_labels, max_length=16)
    vectors = np.random.RandomState(0).normal(size=(120, 8)).astype(np.float32)
    return texts, config, student_input(tmp_path, config), vectors


def test_an_epoch_is_at_least_epoch_examples_long(tmp_path, toy_rows, monkeypatch):
    """A small training set is passed over several times per epoch, so it gets as many updates between two
    dev checks as a set of `epoch_examples` texts would; a larger set is passed over once."""
    import numpy as np
    import torch

    from gendistill.compressor.distill import DistillSettings, train_student

    texts, config, inputs, vectors = _toy_student(tmp_path, toy_rows, num_labels=3)
    steps = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1])
    # 640 examples: 7 passes over the 100 texts, 700 examples in 11 batches of 64; 50: one pass, 2 batches. Two epochs each.
    for examples, batches in ((640, 11), (50, 2)):
        steps.clear()
        settings = DistillSettings(epochs=2, patience=5, batch_size=64, epoch_examples=examples)
        train_student(config, inputs, vectors, texts=texts, hard=np.arange(100) % 3, soft=None, dev_texts=texts[:10],
                      dev_y=[0] * 10, settings=settings)
        assert len(steps) == 2 * batches, examples


def test_logit_adjustment_teaches_the_pool_prior_from_an_even_sample(tmp_path, toy_rows):
    """The true-label loss on logits minus log(pool share / sample share): a student fitted on an even sample then
    answers the pool's majority class for texts it cannot tell apart, and the even prior without the shift."""
    import numpy as np

    from gendistill.compressor.distill import DistillSettings, train_student
    from gendistill.compressor.student import predict_logits

    texts, config, inputs, vectors = _toy_student(tmp_path, toy_rows)
    hard = np.arange(len(texts)) % 2  # labels unrelated to the texts: only the prior can be learned
    settings = DistillSettings(epochs=3, patience=5, lam=1.0, epoch_examples=2000)
    shares = {}
    for name, shift in (("even", None), ("pool 90 / 10", np.log([0.9 / 0.5, 0.1 / 0.5]))):
        model, _ = train_student(config, inputs, vectors, texts=texts, hard=hard, soft=None, dev_texts=texts[:10], dev_y=[0] * 10,
                                 settings=settings, label_shift=shift)
        shares[name] = float((predict_logits(model, inputs, texts).argmax(1) == 0).mean())
    assert shares["pool 90 / 10"] > 0.95, shares
    assert 0.2 < shares["even"] < 0.8, shares


def test_the_logits_loss_fits_the_teachers_centred_logits_whatever_their_offset(tmp_path, toy_rows):
    """--teacher-labels logits: the student learns the teacher's logits themselves (their differences, since a softmax
    ignores a common shift), so a teacher whose logits all carry +10 teaches the same student."""
    import numpy as np

    from gendistill.compressor.distill import DistillSettings, train_student
    from gendistill.compressor.student import predict_logits

    texts, config, inputs, vectors = _toy_student(tmp_path, toy_rows)
    config.dropout = 0.0  # fitted exactly, not under noise
    topic_margin = {"sport": 3.0, "business": -1.0, "tech": -3.0}  # how sure the teacher is, by topic
    margin = np.array([topic_margin[label] for _, label in toy_rows[: len(texts)]], dtype=np.float32)
    teacher = np.stack([margin / 2, -margin / 2], axis=1)
    settings = DistillSettings(epochs=8, patience=10, lam=0.0, epoch_examples=10_000, lr=3e-3, teacher_labels="logits", select_by="loss")
    fitted = {}
    for offset in (0.0, 10.0):
        model, _ = train_student(config, inputs, vectors, texts=texts, hard=np.full(len(texts), -1), soft=teacher + offset,
                                 dev_texts=texts, dev_y=list((margin < 0).astype(int)), settings=settings)
        logits = predict_logits(model, inputs, texts)
        fitted[offset] = logits[:, 0] - logits[:, 1]
    for label, value in topic_margin.items():  # the margins themselves, not just their signs
        assert abs(np.median(fitted[0.0][margin == value]) - value) < 0.75, (label, np.median(fitted[0.0][margin == value]))
    np.testing.assert_allclose(fitted[10.0], fitted[0.0], atol=1e-3)


def test_the_student_epoch_is_kept_by_dev_accuracy_or_dev_loss(tmp_path, toy_rows):
    import numpy as np

    from gendistill.compressor.distill import DistillSettings, train_student

    texts, config, inputs, vectors = _toy_student(tmp_path, toy_rows)
    labels = np.array([int(label != toy_rows[0][1]) for _, label in toy_rows[: len(texts)]])  # one topic against the others
    for select_by in ("accuracy", "loss"):
        settings = DistillSettings(epochs=6, patience=10, lam=1.0, epoch_examples=200, select_by=select_by)
        seen = {}  # the on_epoch hook (benchmarks/student/epoch_trace.py) sees each epoch's model, in eval mode

        def on_epoch(epoch, model, inputs, record):
            assert not model.training and record["epoch"] == epoch
            seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
            record["probe"] = -epoch

        model, history = train_student(config, inputs, vectors, texts=texts, hard=labels, soft=None, dev_texts=texts[50:80],
                                       dev_y=list(labels[50:80]), settings=settings, on_epoch=on_epoch)
        kept = [h for h in history if h.get("kept")]
        assert len(kept) == 1 and len(history) == 6
        assert sorted(seen) == [1, 2, 3, 4, 5, 6] and [h["probe"] for h in history] == [-1, -2, -3, -4, -5, -6]
        assert all(np.array_equal(v, model.state_dict()[k]) for k, v in seen[kept[0]["epoch"]].items())  # the kept epoch's weights
        if select_by == "accuracy":
            assert kept[0]["dev_accuracy"] == max(h["dev_accuracy"] for h in history)
            assert kept[0]["epoch"] == min(h["epoch"] for h in history if h["dev_accuracy"] == kept[0]["dev_accuracy"])
        else:
            assert kept[0]["dev_loss"] == min(h["dev_loss"] for h in history)


def test_extra_loss_sees_each_batch_and_its_term_is_trained(tmp_path, toy_rows):
    """train_student's `extra_loss` hook (benchmarks/student/token_targets.py) gets each step's text indices and their
    padded ids, and what it returns is added to the loss; returning None leaves training as it is without the hook."""
    import numpy as np

    from gendistill.compressor.distill import DistillSettings, train_student

    texts, config, inputs, vectors = _toy_student(tmp_path, toy_rows)
    labels = np.array([int(label != toy_rows[0][1]) for _, label in toy_rows[: len(texts)]])
    settings = DistillSettings(epochs=2, patience=10, lam=1.0, epoch_examples=200, lr=0.2)  # 4 Adam steps an epoch
    seen = []

    def watch(model, batch, input_ids):
        assert model.training
        np.testing.assert_array_equal(input_ids.numpy(), inputs([texts[i] for i in batch.tolist()]))
        seen.extend(batch.tolist())
        return None

    def pull(model, batch, input_ids):  # a term only the hook knows: the first class's bias towards 5
        return 10.0 * (model.classifier.bias[0] - 5.0) ** 2

    def train(extra_loss=None):
        model, _ = train_student(config, inputs, vectors, texts=texts, hard=labels, soft=None, dev_texts=texts[:20],
                                 dev_y=list(labels[:20]), settings=settings, extra_loss=extra_loss)
        return model.state_dict()

    plain, watched, pulled = train(), train(watch), train(pull)
    assert sorted(set(seen)) == list(range(len(texts))) and len(seen) == 2 * 200
    assert all(np.array_equal(plain[k], watched[k]) for k in plain)
    assert float(pulled["classifier.bias"][0]) - float(plain["classifier.bias"][0]) > 0.5


def test_keep_confident_distills_on_the_synthetic_texts_the_teacher_is_surest_of(finished_run):
    import numpy as np

    from gendistill.compressor.annotate import load_annotations
    from gendistill.compressor.distill import DistillSettings, training_set
    from gendistill.compressor.synthesize import load_synthetic
    from gendistill.runtime.classifier import softmax

    run_dir, _ = finished_run
    synthetic = load_synthetic(run_dir)
    everything = training_set(run_dir, DistillSettings(keep_confident=0))
    assert training_set(run_dir, DistillSettings(keep_confident=len(synthetic)))["texts"] == everything["texts"]
    half = training_set(run_dir, DistillSettings(keep_confident=len(synthetic) // 2))
    real = len(everything["texts"]) - len(synthetic)
    assert half["texts"][:real] == everything["texts"][:real] and len(half["texts"]) == real + len(synthetic) // 2
    confidence = softmax(load_annotations(run_dir, "synthetic")).max(1)
    kept = set(half["texts"][real:])
    chosen = [i for i, text in enumerate(synthetic) if text in kept]
    left_out = [i for i, text in enumerate(synthetic) if text not in kept]
    assert min(confidence[chosen]) >= max(confidence[left_out])
    # The kept texts keep their order and their own soft labels.
    assert half["texts"][real:] == [synthetic[i] for i in chosen]
    np.testing.assert_array_equal(half["soft"][real:], everything["soft"][[real + i for i in chosen]])


def test_a_larger_pool_keeps_a_larger_share_of_its_surest_texts(finished_run):
    """keep_share: of a large pool the student learns from that share (the surest texts), never fewer than
    keep_confident; keep_confident 0 still keeps everything."""
    from gendistill.compressor.distill import DistillSettings, kept_count, training_set
    from gendistill.compressor.synthesize import load_synthetic

    cnn = DistillSettings(keep_confident=10_000)  # the Kim-CNN's, when unset
    assert [kept_count(cnn, pool) for pool in (5_000, 10_000, 20_000, 40_000, 80_000)] == [5_000, 10_000, 10_000, 15_000, 30_000]
    assert kept_count(DistillSettings(keep_confident=10_000, keep_share=0.0), 80_000) == 10_000
    assert kept_count(DistillSettings(keep_confident=0), 80_000) == 80_000
    run_dir, _ = finished_run
    pool = len(load_synthetic(run_dir))
    real = len(training_set(run_dir, DistillSettings(keep_confident=0))["texts"]) - pool
    by_share = training_set(run_dir, DistillSettings(keep_confident=1, keep_share=0.5))
    assert by_share["synthetic"] == round(pool / 2) and len(by_share["texts"]) == real + round(pool / 2)
    assert training_set(run_dir, DistillSettings(keep_confident=1, keep_share=0.0))["synthetic"] == 1
    # The same surest texts as asking for that many by count.
    assert by_share["texts"] == training_set(run_dir, DistillSettings(keep_confident=round(pool / 2), keep_share=0.0))["texts"]


def test_an_unset_keep_confident_is_the_students_own(finished_run):
    """--keep-confident unset: the bigru learns from every synthetic text, the other students from the surest 10,000
    (or 37.5% of a larger pool); the stage saves the count it used, and any saved count satisfies an unset one."""
    from gendistill.compressor.distill import DistillSettings, kept_count, training_set, with_auto_choices
    from gendistill.compressor.pipeline import settings_difference
    from gendistill.compressor.synthesize import load_synthetic

    run_dir, _ = finished_run
    resolved = {a: with_auto_choices(DistillSettings(architecture=a), run_dir) for a in ("bigru", "kim-cnn", "res-cnn", "static")}
    assert {a: s.keep_confident for a, s in resolved.items()} == {"bigru": 0, "kim-cnn": 10_000, "res-cnn": 10_000, "static": 10_000}
    assert with_auto_choices(DistillSettings(architecture="bigru", keep_confident=5), run_dir).keep_confident == 5  # asked for: kept
    assert kept_count(resolved["bigru"], 80_000) == 80_000 and kept_count(resolved["kim-cnn"], 80_000) == 30_000
    assert json.loads((run_dir / "distill" / "settings.json").read_text())["keep_confident"] == 0  # the run's student: a bigru
    pool = len(load_synthetic(run_dir))
    assert training_set(run_dir, DistillSettings(architecture="bigru"))["synthetic"] == pool
    assert training_set(run_dir, DistillSettings(architecture="bigru", keep_confident=pool // 2, keep_share=0.0))["synthetic"] == pool // 2
    assert settings_difference({"keep_confident": 10_000}, {"keep_confident": None}) is None
    assert settings_difference({"keep_confident": 0}, {"keep_confident": 10_000}) == "keep_confident: 0 -> 10000"


def test_a_setting_added_later_reads_as_what_older_runs_did():
    """A stage made before a setting existed is reused when the setting asks for what that stage did, and
    refused (or re-made) when it asks for something else."""
    from gendistill.compressor.pipeline import settings_difference

    assert settings_difference({"count": 10}, {"count": 10, "prefix_share": 0.0}) is None
    assert settings_difference({"count": 10}, {"count": 10, "prefix_share": 0.5}) == "prefix_share: 0.0 -> 0.5"
    assert settings_difference({"lam": 0.5}, {"lam": 0.2, "keep_confident": 0}) == "lam: 0.5 -> 0.2"
    assert settings_difference({"lam": 0.2}, {"lam": 0.2, "keep_confident": 10_000}) == "keep_confident: 0 -> 10000"
    assert settings_difference({"keep_confident": 10_000}, {"keep_confident": 10_000, "keep_share": 0.375}) == "keep_share: 0.0 -> 0.375"
    assert settings_difference({"lam": 0.2}, {"lam": 0.2, "logit_adjustment": False, "select_by": "accuracy"}) is None
    # An automatic choice accepts what a stage made before it existed did, as it accepts any value a stage saved.
    assert settings_difference({"lam": 0.2}, {"lam": 0.2, "teacher_labels": "auto", "vocabulary": "auto", "keep_confident": None}) is None
    assert settings_difference({"lam": 0.2}, {"lam": 0.2, "teacher_labels": "logits"}) == "teacher_labels: 'soft' -> 'logits'"


def test_a_setting_removed_since_is_ignored_at_the_value_the_code_does_now():
    """A stage made while a since-removed setting existed is reused when it had the value that does what the code
    does now, and re-made when it had another."""
    from gendistill.compressor.pipeline import settings_difference

    assert settings_difference({"lam": 0.2, "transfer_mix": "as-sampled"}, {"lam": 0.2}) is None
    assert settings_difference({"lam": 0.2, "transfer_mix": "prior"}, {"lam": 0.2}) == "transfer_mix: 'prior' -> None"
    assert settings_difference({"lam": 0.2, "gone_for_good": 1}, {"lam": 0.2}) == "gone_for_good: 1 -> None"


def test_a_teacher_trained_in_bf16_is_reused_for_fp32_and_the_other_way_round():
    """precision, like device, changes how fast a teacher trains, not which teacher (measured the same over 3 seeds)."""
    from gendistill.compressor.pipeline import settings_difference
    from gendistill.compressor.teacher import TeacherSettings, training_precision

    assert settings_difference({"epochs": 4, "precision": "bf16"}, {"epochs": 4, "precision": "fp32"}) is None
    assert settings_difference({"epochs": 4}, {"epochs": 4, "precision": "auto"}) is None  # made before the setting existed
    assert settings_difference({"epochs": 4, "precision": "bf16"}, {"epochs": 3, "precision": "bf16"}) == "epochs: 4 -> 3"
    assert training_precision(TeacherSettings(precision="fp32"), "cpu") == "fp32"
    assert training_precision(TeacherSettings(precision="bf16"), "cpu") == "bf16"
    assert training_precision(TeacherSettings(precision="auto"), "cuda") == "fp32"


def test_annotate_reports_how_often_the_teacher_gives_the_class_a_text_was_asked_for(tmp_path, finished_run):
    """synthetic.jsonl rows of a label-conditioned generator carry `prompted`; the annotate stage says how often
    the teacher's label is that one."""
    import shutil

    import numpy as np

    from gendistill.compressor.annotate import AnnotateSettings, load_annotations, run_annotate
    from gendistill.compressor.rundir import read_jsonl, stage_path, write_jsonl_atomic

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)
    rows = read_jsonl(stage_path(run_dir, "synthesize") / "synthetic.jsonl")
    before = load_annotations(run_dir, "synthetic").argmax(1)
    k = load_annotations(run_dir, "synthetic").shape[1]
    # Even rows ask for the class the teacher gave them, odd rows for another one.
    prompted = [int(y) if i % 2 == 0 else int(y + 1) % k for i, y in enumerate(before)]
    write_jsonl_atomic(stage_path(run_dir, "synthesize") / "synthetic.jsonl", [{**row, "prompted": p} for row, p in zip(rows, prompted)])
    metrics = run_annotate(AnnotateSettings(engine="torch"), run_dir)
    after = load_annotations(run_dir, "synthetic").argmax(1)
    assert metrics["synthetic_prompted_agreement"] == float((after == np.asarray(prompted)).mean())
    assert 0.3 < metrics["synthetic_prompted_agreement"] < 0.7  # about half: the teacher's labels barely moved


def test_the_distill_stage_records_the_dev_texts_its_shipping_rule_read(finished_run):
    """The stage counts the dev texts only one student gets right (each student re-read from disk), ships by
    `ships_labeled_only` on them, and the report says so in a sentence."""
    from gendistill.compressor.distill import dev_disagreement, dev_right, ships_labeled_only
    from gendistill.compressor.rundir import read_json, stage_path

    run_dir = finished_run[0]
    metrics = read_json(stage_path(run_dir, "distill") / "metrics.json")
    right = [dev_right(stage_path(run_dir, "distill") / name, run_dir) for name in ("student", "labeled_only")]
    assert metrics["dev_disagreement"] == dev_disagreement(*right)
    assert [right[0].mean(), right[1].mean()] == pytest.approx([metrics["dev_accuracy"], metrics["labeled_only_dev_accuracy"]])
    assert metrics["shipped"] == ("labeled-only" if ships_labeled_only(metrics["dev_disagreement"]) else "generation-distillation")
    counts = metrics["dev_disagreement"]
    assert (f"Of the dev texts only one of them gets right, {counts['only_distilled_right']} are the generation-distillation "
            f"student's and {counts['only_labeled_only_right']} the labeled-only one's") in (run_dir / "report.md").read_text()


def test_a_student_no_better_than_the_majority_class_is_reported_as_a_failure(tmp_path, finished_run):
    """The report (and the command's output) says loudly when neither student beats always answering one class on dev."""
    import shutil

    from gendistill.compressor.evaluate import render_markdown, write_report
    from gendistill.compressor.rundir import read_json, stage_path
    from gendistill.runtime.bundle import write_json_atomic

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)
    metrics = {**read_json(stage_path(run_dir, "distill") / "metrics.json"), "shipped": "generation-distillation"}
    write_json_atomic(stage_path(run_dir, "distill") / "metrics.json", {**metrics, "dev_accuracy": 0.9, "labeled_only_dev_accuracy": 0.9})
    assert "warning" not in write_report(run_dir)  # a student that beats a constant on dev
    write_json_atomic(stage_path(run_dir, "distill") / "metrics.json", {**metrics, "dev_accuracy": 0.2, "labeled_only_dev_accuracy": 0.1})
    report = write_report(run_dir)
    assert report["warning"].startswith("The shipped student scores 20.0% on dev, no better than always answering")
    assert "--teacher-prior pool" not in report["warning"] and "--unlabeled FILE" in report["warning"]  # pool is the default
    assert f"**Warning: {report['warning']}**" in render_markdown(report)
    teacher = stage_path(run_dir, "teacher") / "settings.json"
    write_json_atomic(teacher, {**read_json(teacher), "prior": "train"})
    assert "try --teacher-prior pool" in write_report(run_dir)["warning"]


def test_the_labeled_only_student_is_exported_when_it_is_the_one_shipped(tmp_path, finished_run):
    """When the labeled-only student (static by default, not the distilled bigru) scored higher on dev, the bundle is it."""
    import shutil

    from gendistill.compressor.rundir import load_split, read_json, stage_path
    from gendistill.compressor.student import load_student, predict_logits, student_input
    from gendistill.runtime.bundle import write_json_atomic
    from gendistill.runtime.classifier import Classifier

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run[0], run_dir)
    metrics = read_json(stage_path(run_dir, "distill") / "metrics.json")
    write_json_atomic(stage_path(run_dir, "distill") / "metrics.json", {**metrics, "shipped": "labeled-only"})
    result = invoke("export", run_dir, "--out", tmp_path / "bundle", "--quantize", "none")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["model"]["architecture"] == "static"
    student_dir = stage_path(run_dir, "distill") / "labeled_only"
    model, config = load_student(student_dir)
    texts = load_split(run_dir, "test")[0]
    expected = predict_logits(model, student_input(student_dir, config), texts).argmax(1)
    assert list(Classifier.load(tmp_path / "bundle").logits(texts).argmax(1)) == list(expected)


def test_every_student_gets_the_same_logits_alone_or_in_a_padded_batch_and_the_gru_reads_word_order():
    """Padding is exact for every architecture (the runtime batches freely); the BiGRU, unlike the static student, tells
    a text from the same pieces in another order, through its backward direction as well as its forward one."""
    import torch

    from gendistill.compressor.distill import ARCHITECTURES
    from gendistill.compressor.student import StudentConfig, build_student

    torch.manual_seed(0)
    text = torch.tensor([[5, 9, 17, 3, 11, 42, 8]])
    padded = torch.cat([torch.cat([text, torch.zeros((1, 6), dtype=torch.int64)], 1),
                        torch.randint(1, 50, (1, 13))])  # a longer text beside it: the first row gets 6 pads
    for architecture in ARCHITECTURES:
        model = build_student(StudentConfig(architecture=architecture, vocab_size=50, embed_dim=8, hidden=8, num_filters=4,
                                            num_labels=3)).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(text)[0], model(padded)[0], atol=1e-5, rtol=0, msg=architecture)
    gru = build_student(StudentConfig(architecture="bigru", vocab_size=50, embed_dim=8, hidden=8, num_labels=3)).eval()
    with torch.no_grad():
        assert not torch.allclose(gru(text), gru(text.flip(1)), atol=1e-4)
        for weight in gru.forward_gru.parameters():  # a zeroed forward GRU stays at 0: the backward one alone sees the order
            weight.zero_()
        assert not torch.allclose(gru(text), gru(text.flip(1)), atol=1e-4)


def test_auto_student_is_the_bigru_for_short_texts_and_the_static_one_for_long_ones(tmp_path):
    """`--student auto` (the default) follows the teacher's input length; an explicit choice is kept; the auto input
    length is 4x the teacher's for the static student, 2x for the others, and the auto initial vectors the teacher's
    outputs for the static student, its input table for the others; a stage made under any resolved choice satisfies
    a request for auto."""
    from gendistill.compressor.distill import DistillSettings, with_auto_choices
    from gendistill.compressor.pipeline import settings_difference
    from gendistill.compressor.rundir import stage_path
    from gendistill.runtime.bundle import write_json_atomic

    assert DistillSettings().architecture == "auto"
    for teacher_length, architecture, length in ((64, "bigru", 128), (128, "bigru", 256), (256, "static", 1024), (512, "static", 2048)):
        run_dir = tmp_path / str(teacher_length)
        stage_path(run_dir, "teacher").mkdir(parents=True)
        write_json_atomic(stage_path(run_dir, "teacher") / "settings.json", {"max_length": teacher_length})
        resolved = with_auto_choices(DistillSettings(), run_dir)
        embeddings = "teacher" if architecture == "bigru" else "teacher-output"
        assert (resolved.architecture, resolved.max_length, resolved.embeddings) == (architecture, length, embeddings)
        kim_cnn = with_auto_choices(DistillSettings(architecture="kim-cnn"), run_dir)
        assert (kim_cnn.architecture, kim_cnn.max_length, kim_cnn.embeddings) == ("kim-cnn", 2 * teacher_length, "teacher")
        assert with_auto_choices(DistillSettings(embeddings="random"), run_dir).embeddings == "random"  # asked for: kept
        assert with_auto_choices(DistillSettings(architecture="static", max_length=100), run_dir).max_length == 100
        assert settings_difference({"architecture": architecture}, {"architecture": "auto"}) is None
        assert settings_difference({"embeddings": embeddings}, {"embeddings": "auto"}) is None
        labels = "logits" if architecture == "bigru" else "soft"  # auto: the bigru learns the teacher's logits
        assert resolved.teacher_labels == labels and kim_cnn.teacher_labels == "soft"
        assert with_auto_choices(DistillSettings(teacher_labels="hard"), run_dir).teacher_labels == "hard"  # asked for: kept
        assert settings_difference({"teacher_labels": labels}, {"teacher_labels": "auto"}) is None
        vocabulary = "teacher" if architecture == "bigru" else "trained"  # auto: the bigru and Kim-CNN read the teacher's wordpieces
        assert resolved.vocabulary == vocabulary and kim_cnn.vocabulary == "teacher"
        assert with_auto_choices(DistillSettings(vocabulary="teacher", architecture="static"), run_dir).vocabulary == "teacher"
    assert settings_difference({"architecture": "kim-cnn"}, {"architecture": "bigru"}) == "architecture: 'kim-cnn' -> 'bigru'"
    # A benchmark seed recorded before teacher_labels was an automatic choice learned from soft labels: measured again.
    from gendistill.compressor.distill import auto_choices_difference

    recorded = {"architecture": "bigru", "max_length": 64, "embeddings": "teacher", "keep_confident": 0}
    assert auto_choices_difference(recorded, DistillSettings(), 32) == "teacher_labels: 'soft' -> 'logits' (auto)"
    assert auto_choices_difference({**recorded, "teacher_labels": "logits"}, DistillSettings(), 32) == "vocabulary: 'trained' -> 'teacher' (auto)"
    assert auto_choices_difference({**recorded, "teacher_labels": "logits", "vocabulary": "teacher"}, DistillSettings(), 32) is None


def test_gru_units_set_the_bigru_width_and_runs_made_before_the_setting_read_as_64():
    """--student-gru-units is the bigru's units per direction and nothing else's; a distill stage saved before the
    setting existed made 64-unit GRUs, so it satisfies a request for 64 and not the default 32."""
    from gendistill.compressor.distill import DistillSettings, student_shape
    from gendistill.compressor.pipeline import settings_difference
    from gendistill.runtime.errors import GendistillError

    assert student_shape(DistillSettings(architecture="bigru")) == {"hidden": 32}
    assert student_shape(DistillSettings(architecture="bigru", gru_units=64)) == {"hidden": 64}
    assert student_shape(DistillSettings(architecture="static", gru_units=32)) == {"hidden": 128, "dropout": 0.1}
    assert student_shape(DistillSettings(architecture="kim-cnn", gru_units=32)) == {}
    assert settings_difference({"architecture": "bigru"}, {"architecture": "bigru", "gru_units": 64}) is None
    assert settings_difference({"architecture": "bigru"}, {"architecture": "bigru", "gru_units": 32}) == "gru_units: 64 -> 32"
    with pytest.raises(GendistillError, match="--student-gru-units must be at least 1"):
        DistillSettings(gru_units=0)
