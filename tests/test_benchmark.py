"""The benchmark harness end to end through the real CLI, on the toy corpus with tiny models."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from click.testing import CliRunner

from gendistill.runtime.cli import main
from tiny_models import make_tiny_generator, make_tiny_teacher

ROWS = ["tfidf-svm", "fasttext", "encoder-lr", "teacher", "student-labeled-only", "student-kd", "student-gendist",
        "student-shipped", "student-gendist-hard", "student-oracle-unlabeled"]


@pytest.fixture(scope="module")
def benchmark_out(tmp_path_factory, toy_csv, toy_rows):
    pytest.importorskip("fasttext")
    root = tmp_path_factory.mktemp("benchmark")
    texts = [t for t, _ in toy_rows]
    teacher, generator = make_tiny_teacher(root / "teacher", texts), make_tiny_generator(root / "generator", texts)
    out = root / "out"
    args = [
        "benchmark", "--dataset", toy_csv, "--seeds", 1, "--per-class", 6, "--synthetic-counts", "0,8,16",
        "--lambdas", "0.2", "--kd-temperatures", "2", "--architectures", "res-cnn", "--embedding-inits", "random",
        "--samplers", "hf,ctranslate2", "--top-ks", "5", "--synthesis-count", 8,
        "--latency-texts", 10, "--out", out,
        "--teacher", teacher, "--generator", generator, "--teacher-epochs", 2, "--teacher-lr", "1e-3",
        "--synthesis-batch", 8, "--max-new-tokens", 12, "--vocab-size", 150, "--student-epochs", 2, "--student-epoch-examples", 500,
        "--max-length", 32, "--dev-size", 30, "--test-size", 30,
    ]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output, [str(a) for a in args]


def test_every_row_is_measured_on_every_dataset(benchmark_out):
    out, output, _ = benchmark_out
    results = json.loads((out / "results.json").read_text())
    assert list(results["datasets"]) == ["toy"]
    toy = results["datasets"]["toy"]
    assert toy["seeds"] == [0] and toy["per_class"] == 6
    assert [r["model"] for r in toy["rows"]] == ROWS
    for row in toy["rows"]:
        assert len(row["accuracy_per_seed"]) == 1 and row["accuracy_std"] == 0.0
        assert row["params"] > 0 and row["bytes"] > 0 and row["latency_ms"] > 0, row["model"]
    rows = {r["model"]: r for r in toy["rows"]}
    assert rows["student-gendist"]["precision"] in ("int8", "fp32")  # fp32 only when the tiny student fails the int8 check
    for model in ROWS:
        assert model in output

    # student-shipped: the distill stage's rule applied to the two rows' students, on the dev texts only one gets right.
    from gendistill.compressor.distill import ships_labeled_only

    seed = toy["per_seed"]["0"]["rows"]
    disagreement = seed["student-shipped"]["dev_disagreement"]
    assert disagreement["only_distilled_right"] + disagreement["only_labeled_only_right"] <= toy["splits"]["dev"]
    expected = "student-labeled-only" if ships_labeled_only(disagreement) else "student-gendist"
    assert rows["student-shipped"]["shipped_per_seed"] == [expected]
    assert rows["student-shipped"]["accuracy_mean"] == rows[expected]["accuracy_mean"]
    assert f"Per seed: 0: {expected}." in (out / "RESULTS.md").read_text()


def test_results_schema(benchmark_out):
    from gendistill.compressor.benchmark.report import ROW_KEYS, check_results

    out, _, _ = benchmark_out
    results = json.loads((out / "results.json").read_text())
    check_results(results)
    for row in results["datasets"]["toy"]["rows"]:
        assert set(ROW_KEYS) <= set(row)
        assert isinstance(row["accuracy_mean"], float) and 0.0 <= row["accuracy_mean"] <= 1.0
        assert isinstance(row["accuracy_std"], float) and row["accuracy_std"] >= 0.0
        assert isinstance(row["macro_f1_mean"], float) and 0.0 <= row["macro_f1_mean"] <= 1.0
        assert isinstance(row["params"], int) and isinstance(row["bytes"], int)
    assert results["benchmark_settings"]["synthetic_counts"] == [0, 8, 16]
    assert results["datasets"]["toy"]["pipeline_settings"]["distill"]["lam"] is not None
    broken = json.loads(json.dumps(results))
    broken["datasets"]["toy"]["rows"] = broken["datasets"]["toy"]["rows"][1:]
    with pytest.raises(ValueError, match="rows must be"):
        check_results(broken)
    older = json.loads(json.dumps(results))  # results made before the encoder-lr row still check
    older["datasets"]["toy"]["rows"] = [r for r in older["datasets"]["toy"]["rows"] if r["model"] != "encoder-lr"]
    check_results(older)
    broken = json.loads(json.dumps(results))
    broken["datasets"]["toy"]["rows"][0]["accuracy_mean"] = 73.5
    with pytest.raises(ValueError, match="fraction"):
        check_results(broken)


def test_curve_and_ablations(benchmark_out):
    out, _, _ = benchmark_out
    toy = json.loads((out / "results.json").read_text())["datasets"]["toy"]
    curve = {(p["transfer"], p["count"]): p for p in toy["synthetic_curve"]}
    assert set(curve) == {(t, c) for t in ("synthetic", "unlabeled") for c in (0, 8, 16)}
    assert curve[("synthetic", 0)]["row"] == "student-kd"
    assert curve[("synthetic", 16)]["row"] == "student-gendist"
    assert curve[("synthetic", 8)]["transfer_texts_per_seed"] == [8]
    ablations = {(a["ablation"], str(a["value"])) for a in toy["ablations"]}
    assert {("lambda", "0.2"), ("kd_temperature", "2.0"), ("architecture", "res-cnn"), ("embeddings", "random")} <= ablations
    assert sum(a["default"] for a in toy["ablations"]) == 6  # one default per ablation: 4 of the student, sampler and top-k


def test_markdown_and_plots_are_written(benchmark_out):
    out, _, _ = benchmark_out
    markdown = (out / "RESULTS.md").read_text()
    for model in ROWS:
        assert f"| {model} |" in markdown
    for name in ("toy-synthetic-curve.png", "toy-accuracy-latency.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in markdown


def test_rerun_reuses_every_cached_row(benchmark_out, tmp_path, monkeypatch):
    from gendistill.compressor.benchmark import run

    out, _, args = benchmark_out
    rows = sorted((out / "runs").rglob("benchmark/*.json"))
    before = {p: p.stat().st_mtime_ns for p in rows}
    shutil.move(out / "results.json", tmp_path / "results.json")  # else the seed is read back from it, runs dir unread
    writes = []
    monkeypatch.setattr(run, "write_outputs", lambda results, out_dir, real=run.write_outputs: writes.append(out_dir) or real(results, out_dir))
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert before == {p: p.stat().st_mtime_ns for p in rows}
    assert len(writes) == 1  # once for the one seed, not again at the end
    assert json.loads((out / "results.json").read_text())["datasets"]["toy"]["seeds"] == [0]


def test_a_seed_recorded_in_results_json_is_read_back_without_its_runs_dir(benchmark_out, tmp_path, caplog):
    """Another machine, same command: the committed results.json holds seed 0, its runs dir is gone; seed 0 is
    read back, not re-made; with a pipeline setting changed it would be measured again."""
    from gendistill.compressor.benchmark.run import BenchmarkSettings, recorded_seeds

    out, _, args = benchmark_out
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(out / "results.json", again / "results.json")
    before = json.loads((again / "results.json").read_text())
    files = {p.name: p.read_bytes() for p in again.iterdir()}
    args = [a for a in args]
    args[args.index("--out") + 1] = str(again)
    args += ["--runs-dir", str(tmp_path / "no-runs")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "no-runs").exists()
    assert {p.name: p.read_bytes() for p in again.iterdir()} == files  # nothing new measured: not even re-dated

    settings = BenchmarkSettings(**{**before["benchmark_settings"], "seeds": [0, 1]})
    assert list(recorded_seeds(settings, again)["toy"]) == [0]
    changed = BenchmarkSettings(**{**before["benchmark_settings"], "pipeline": {**settings.pipeline, "student_epochs": 3}})
    assert recorded_seeds(changed, again) == {}
    # A seed made under other defaults (an older version's) is measured again, and the run says so with the reason.
    stale = json.loads((again / "results.json").read_text())
    stale["datasets"]["toy"]["per_seed"]["0"]["settings"]["distill"]["lam"] = 0.9
    (again / "results.json").write_text(json.dumps(stale))
    with caplog.at_level(logging.INFO, logger="gendistill.compressor.benchmark.run"):
        assert recorded_seeds(settings, again) == {}
    assert any(r.message.startswith("toy seed 0 in ") and r.message.endswith("was made with other settings (distill.lam: 0.9 -> 0.2): measured again")
               for r in caplog.records)
    # A seed whose student `auto` chose by an older rule: its requested settings ("auto") are today's, but the choice
    # it recorded is not what today's rule makes for its teacher length, so it is measured again too.
    made = json.loads(json.dumps(before))
    seed = made["datasets"]["toy"]["per_seed"]["0"]
    assert seed["student_choices"]["architecture"] == "bigru" and seed["teacher_length"] == 32  # the pipeline's choice, recorded
    seed["student_choices"]["architecture"] = "kim-cnn"
    (again / "results.json").write_text(json.dumps(made))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gendistill.compressor.benchmark.run"):
        assert recorded_seeds(settings, again) == {}
    assert any(r.message.endswith("(distill.architecture: 'kim-cnn' -> 'bigru' (auto)): measured again") for r in caplog.records)
    # So is one whose synthetic texts kept were chosen by an older KEEP_CONFIDENT rule (the bigru keeps all: 0).
    made = json.loads(json.dumps(before))
    seed = made["datasets"]["toy"]["per_seed"]["0"]
    assert seed["student_choices"]["keep_confident"] == 0
    seed["student_choices"]["keep_confident"] = 10_000
    (again / "results.json").write_text(json.dumps(made))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gendistill.compressor.benchmark.run"):
        assert recorded_seeds(settings, again) == {}
    assert any(r.message.endswith("(distill.keep_confident: 10000 -> 0 (auto)): measured again") for r in caplog.records)
    (again / "results.json").write_text("{ cut off")
    assert recorded_seeds(settings, again) == {}


def test_bad_counts_are_refused(tmp_path, toy_csv):
    result = CliRunner().invoke(main, ["benchmark", "--dataset", str(toy_csv), "--synthetic-counts", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--synthetic-counts" in result.output


def test_aggregate_over_seeds(benchmark_out):
    """Means and sample standard deviations over seeds, from two copies of the measured seed."""
    from gendistill.compressor.benchmark.report import check_results
    from gendistill.compressor.benchmark.run import BenchmarkSettings, aggregate

    out, _, _ = benchmark_out
    results = json.loads((out / "results.json").read_text())
    seed = results["datasets"]["toy"]["per_seed"]["0"]
    seed["settings"] = results["datasets"]["toy"]["pipeline_settings"]
    other = json.loads(json.dumps(seed))
    for row in other["rows"].values():
        row["accuracy"] = 1.0 - row["accuracy"] if row["accuracy"] != 0.5 else 0.25
    settings = BenchmarkSettings(**{**results["benchmark_settings"], "seeds": [0, 1]})
    toy = aggregate(settings, {0: seed, 1: other})
    check_results({"datasets": {"toy": toy}})
    teacher = next(r for r in toy["rows"] if r["model"] == "teacher")
    a, b = teacher["accuracy_per_seed"]
    assert teacher["accuracy_mean"] == pytest.approx((a + b) / 2)
    assert teacher["accuracy_std"] == pytest.approx(abs(a - b) / 2 ** 0.5)


def test_time_budget_keeps_the_finished_seeds(benchmark_out, tmp_path):
    out, _, args = benchmark_out
    args = [a for a in args]
    args[args.index("--seeds") + 1] = "2"
    args[args.index("--out") + 1] = str(tmp_path / "budget")
    args += ["--runs-dir", str(out / "runs"), "--time-budget-min", "0.01"]  # seed 0 is cached; seed 1 would overrun
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "budget" / "results.json").read_text())
    assert results["datasets"]["toy"]["seeds"] == [0]
    assert results["skipped_for_time_budget"] == [{"dataset": "toy", "seed": 1}]
    assert "toy seed 1" in (tmp_path / "budget" / "RESULTS.md").read_text()
    assert not (out / "runs" / "toy" / "seed1").exists()


def test_a_student_an_older_auto_rule_made_is_remade_and_the_rows_read_as_far_as_it(benchmark_out, tmp_path):
    """A distill stage made at another length (an older auto rule) is re-made by the benchmark, whose runs are a cache
    of today's defaults (`compress` would reuse it: test_compress), and every student row trains at the length of the
    pipeline's own student: the rows compare students that read the same text."""
    from gendistill.compressor.rundir import stage_path

    out, _, args = benchmark_out
    shutil.copytree(out / "runs", tmp_path / "runs")
    seed_dir = tmp_path / "runs" / "toy" / "seed0"
    saved_path = stage_path(seed_dir, "distill") / "settings.json"
    saved = json.loads(saved_path.read_text())
    assert saved["max_length"] == 64  # auto: twice the teacher's --max-length 32
    saved_path.write_text(json.dumps({**saved, "max_length": 48}))
    ablations = {"--lambdas", "--kd-temperatures", "--architectures", "--embedding-inits", "--samplers", "--top-ks", "--synthesis-count"}
    args = [a for i, a in enumerate(args) if a not in ablations and args[i - 1] not in ablations]  # the main rows are enough here
    args[args.index("--out") + 1] = str(tmp_path / "out")
    result = CliRunner().invoke(main, args + ["--runs-dir", str(tmp_path / "runs")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(saved_path.read_text())["max_length"] == 64  # re-made at today's auto length
    for row in ("student-labeled-only", "student-kd", "student-gendist", "student-gendist-hard"):
        assert json.loads((seed_dir / "benchmark" / f"{row}.json").read_text())["settings"]["distill"]["max_length"] == 64, row


def test_sampler_ablation_shares_teacher_and_generator(benchmark_out):
    """Each other sampler samples its own texts from the seed's own generator, at the same count as the curve point."""
    out, _, _ = benchmark_out
    toy = json.loads((out / "results.json").read_text())["datasets"]["toy"]
    entries = [a for a in toy["ablations"] if a["ablation"].startswith("sampler")]
    assert sorted(a["value"] for a in entries) == ["ctranslate2", "hf"]
    default = next(a for a in entries if a["default"])
    assert default["value"] == toy["per_seed"]["0"]["synthesis"]["sampler"] == "ctranslate2" and default["row"] == "curve-synthetic-8"
    assert sorted(a["value"] for a in toy["ablations"] if a["ablation"].startswith("top_k")) == [0, 5]
    other = next(a for a in entries if not a["default"])
    assert other["row"] == "ablation-sampler-hf" and 0 <= other["accuracy_mean"] <= 1
    seed_dir = out / "runs" / "toy" / "seed0"
    variant = seed_dir.with_name("seed0-sampler-hf")
    for stage in ("teacher", "generator"):
        assert (variant / stage / "metrics.json").read_text() == (seed_dir / stage / "metrics.json").read_text()
        assert (variant / stage / "model" / "config.json").stat().st_ino == (seed_dir / stage / "model" / "config.json").stat().st_ino
    assert json.loads((variant / "synthesize" / "metrics.json").read_text())["sampler"] == "hf"
    assert "sampler (8 synthetic texts)" in (out / "RESULTS.md").read_text()
    assert json.loads((seed_dir.with_name("seed0-top_k-5") / "synthesize" / "settings.json").read_text())["top_k"] == 5


def test_a_cached_row_made_before_a_setting_existed_is_reused_only_when_the_setting_asks_for_what_it_did():
    from gendistill.compressor.pipeline import settings_difference

    saved = {"distill": {"lam": 0.2}, "teacher": {"model": "embedded"}, "count": 10}
    wanted = {"distill": {"lam": 0.2, "keep_confident": 0}, "teacher": {"model": "embedded", "prior": "train"}, "count": 10}
    assert settings_difference(saved, wanted, ignore=()) is None
    assert settings_difference(saved, {**wanted, "teacher": {"model": "embedded", "prior": "pool"}}, ignore=()) == "teacher.prior: 'train' -> 'pool'"
    assert settings_difference(saved, {**wanted, "count": 20}, ignore=()) == "count: 10 -> 20"


def _static_model_of(encoder, target):
    """A real (tiny) model2vec static model on the encoder's own tokenizer, saved where the benchmark caches it."""
    import numpy as np
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(encoder / "tokenizer.json"))
    vectors = np.random.RandomState(0).normal(size=(tokenizer.get_vocab_size(), 16)).astype(np.float32)
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=True).save_pretrained(str(target))


def test_model2vec_lr_row_fits_a_head_on_the_static_model_of_the_teacher_encoder(tmp_path, monkeypatch, toy_rows):
    pytest.importorskip("model2vec")
    from gendistill.compressor.benchmark.peers import model2vec_cache_path, model2vec_lr_row
    from gendistill.compressor.teacher import TeacherSettings
    from tiny_models import make_tiny_sentence_encoder

    monkeypatch.setenv("GENDISTILL_CACHE", str(tmp_path / "cache"))
    encoder = make_tiny_sentence_encoder(tmp_path / "encoder", [t for t, _ in toy_rows])
    _static_model_of(encoder, model2vec_cache_path(str(encoder)))  # distilled already: no model2vec environment needed
    labels = sorted({y for _, y in toy_rows})
    texts, y = [t for t, _ in toy_rows], [labels.index(label) for _, label in toy_rows]
    row = model2vec_lr_row(TeacherSettings(model=str(encoder)), str(tmp_path / "no-python"), texts[:60], y[:60], texts[60:90], y[60:90],
                           texts[90:], y[90:], len(labels), texts[:5])
    assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_ms"] > 0 and row["bytes"] > 0
    assert row["tuned"]["dims"] == 16 and row["tuned"]["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)
    outputs = 1 if len(labels) == 2 else len(labels)  # logistic regression: one weight vector for two classes
    assert row["params"] == row["tuned"]["vocabulary"] * 16 + outputs * 16 + outputs


def test_model2vec_lr_row_without_its_environment_says_how_to_make_it(tmp_path, monkeypatch):
    from gendistill.compressor.benchmark.peers import model2vec_dir
    from gendistill.runtime.errors import GendistillError

    monkeypatch.setenv("GENDISTILL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(GendistillError, match="make model2vec-env"):
        model2vec_dir(str(tmp_path / "encoder"), str(tmp_path / "missing" / "python"))
    assert not (tmp_path / "cache" / "model2vec").exists() or not any((tmp_path / "cache" / "model2vec").iterdir())


@pytest.mark.slow
def test_model2vec_distills_a_real_encoder_folder_in_its_own_environment(tmp_path, monkeypatch, toy_rows):
    """The subprocess path, where model2vec's environment exists (`make model2vec-env`; not made by `make test`)."""
    from pathlib import Path

    from gendistill.compressor.benchmark.peers import model2vec_dir
    from tiny_models import make_tiny_sentence_encoder

    python = Path(__file__).resolve().parents[1] / ".venv-model2vec" / "bin" / "python"
    if not python.is_file():
        pytest.skip("model2vec's own environment is not made here (make model2vec-env)")
    monkeypatch.setenv("GENDISTILL_CACHE", str(tmp_path / "cache"))
    encoder = make_tiny_sentence_encoder(tmp_path / "encoder", [t for t, _ in toy_rows])
    folder = model2vec_dir(str(encoder), str(python))
    assert (folder / "model.safetensors").is_file() and not folder.with_name(folder.name + ".partial").exists()
    assert model2vec_dir(str(encoder), str(tmp_path / "gone")) == folder  # cached: the environment is not needed again


def test_setfit_row_trains_setfit_on_a_sentence_encoder(tmp_path, toy_rows):
    pytest.importorskip("setfit")
    from gendistill.compressor.benchmark.peers import setfit_row
    from tiny_models import make_tiny_sentence_encoder

    encoder = make_tiny_sentence_encoder(tmp_path / "encoder", [t for t, _ in toy_rows])
    labels = sorted({y for _, y in toy_rows})
    texts, y = [t for t, _ in toy_rows], [labels.index(label) for _, label in toy_rows]
    work = tmp_path / "work"
    work.mkdir()
    row = setfit_row(str(encoder), 0, texts[:30], y[:30], texts[90:], y[90:], len(labels), work, texts[:3])
    assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_ms"] > 0 and row["tuned"]["iterations"] == 20
    assert (work / "model" / "model_head.pkl").is_file() and not (work / "checkpoints").exists()
    assert row["bytes"] > (encoder / "model.safetensors").stat().st_size and row["params"] > 0


def test_the_labeled_only_student_ships_only_when_it_is_better_on_dev_by_more_than_one_text(tmp_path):
    """The rule reads the dev texts where exactly one student is right: a one-text edge keeps the distilled student,
    two texts swap in the labeled-only one."""
    import numpy as np

    from gendistill.compressor.benchmark.run import shipped_row
    from gendistill.compressor.distill import SHIP_MARGIN, dev_disagreement, ships_labeled_only

    both = [True] * 50 + [False] * 5  # texts both get right, and wrong
    edge = dev_disagreement(np.array(both + [True, False, False]), np.array(both + [False, True, True]))
    assert edge == {"only_distilled_right": 1, "only_labeled_only_right": 2} and not ships_labeled_only(edge)
    assert SHIP_MARGIN == 2 and ships_labeled_only(dev_disagreement(np.array(both + [True] + [False] * 3), np.array(both + [False] + [True] * 3)))
    assert not ships_labeled_only(dev_disagreement(np.array(both + [True] * 3), np.array(both + [False] * 3)))
    # The benchmark's row needs both students on disk: without them there is no student-shipped row.
    rows = {"student-gendist": {"accuracy": 0.9}, "student-labeled-only": {"accuracy": 0.7}}
    assert shipped_row(rows, tmp_path, tmp_path) is None
