"""`--device cuda`: the whole pipeline on a CUDA GPU, on the tiny models built in code. Skipped where torch sees no GPU
(CI has none); run on a GPU machine with `pytest -m cuda`."""

from __future__ import annotations

import json

import pytest

from test_compress import invoke, tiny_args, tiny_models  # noqa: F401 (tiny_models is a fixture)

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU here")]

TORCH_STAGES = ("teacher", "generator", "synthesize", "annotate", "distill")


def metrics(run_dir, stage: str) -> dict:
    return json.loads((run_dir / stage / "metrics.json").read_text())


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory, toy_csv, tiny_models):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("cuda") / "run"
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--device", "cuda", "--sampler", "hf", *tiny_args(tiny_models))
    assert result.exit_code == 0, result.output
    return run_dir


def test_every_torch_stage_runs_on_the_gpu_and_the_run_ends_with_a_verified_bundle(cuda_run):
    from gendistill.runtime import Classifier

    assert {stage: metrics(cuda_run, stage)["device"] for stage in TORCH_STAGES} == dict.fromkeys(TORCH_STAGES, "cuda")
    report = json.loads((cuda_run / "report.json").read_text())
    assert report["bundle"]["precision"] == "fp32"  # the tiny run's few texts cannot show that int8 agrees (test_compress)
    # The bundle made from a GPU-trained student answers on CPU through onnxruntime, like any other.
    classifier = Classifier.load(cuda_run / "bundle")
    assert classifier.predict("the striker scored twice in the final") in report["labels"]
    # The toy corpus's topics are easy: a student trained on the GPU learns them as it does on CPU.
    assert metrics(cuda_run, "distill")["dev_accuracy"] > 0.6


def test_a_run_made_on_the_gpu_is_reused_on_the_cpu(cuda_run, toy_csv, tiny_models):  # noqa: F811
    before = {p: p.stat().st_mtime_ns for p in cuda_run.glob("*/metrics.json")}
    result = invoke("compress", toy_csv, "--out", cuda_run, "--per-class", 20, "--device", "cpu", "--sampler", "hf", *tiny_args(tiny_models))
    assert result.exit_code == 0, result.output
    assert before == {p: p.stat().st_mtime_ns for p in cuda_run.glob("*/metrics.json")}


@pytest.mark.parametrize("student", ["res-cnn", "static", "bigru"])
def test_every_student_trains_on_the_gpu(tmp_path, cuda_run, toy_csv, tiny_models, student):  # noqa: F811
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(cuda_run, run_dir)
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--device", "cuda", "--sampler", "hf", "--from", "distill",
                    *tiny_args(tiny_models, "--student", student))
    assert result.exit_code == 0, result.output
    distill = metrics(run_dir, "distill")
    assert distill["device"] == "cuda" and distill["dev_accuracy"] > 0.5


@pytest.mark.parametrize("recipe", ["frozen", "finetune"])
def test_the_embedded_defaults_shapes_on_the_gpu(tmp_path, toy_csv, toy_rows, recipe):
    """The embedded default's kinds of model: a sentence-transformers encoder used through its own pooling (frozen: the
    encoder on the GPU, the head fitted by scikit-learn; finetune: from that head, the whole encoder trained) and a
    Llama generator, sampled by `--sampler auto`: CTranslate2 on the GPU where it is installed and loads there, else
    transformers, said in one sentence."""
    from tiny_models import make_tiny_llama, make_tiny_sentence_encoder

    texts = [t for t, _ in toy_rows]
    models = make_tiny_sentence_encoder(tmp_path / "teacher", texts), make_tiny_llama(tmp_path / "generator", texts)
    run_dir = tmp_path / "run"
    result = invoke("compress", toy_csv, "--out", run_dir, "--per-class", 20, "--device", "cuda", "--teacher-recipe", recipe,
                    "--sampler", "auto", *tiny_args(models, "--no-export"))
    assert result.exit_code == 0, result.output
    teacher = metrics(run_dir, "teacher")
    assert (teacher["recipe"], teacher["kind"], teacher["device"]) == (recipe, "pooled", "cuda")
    synthesize = metrics(run_dir, "synthesize")
    assert synthesize["device"] == "cuda" and synthesize["kept"] == 24
    print(f"{recipe}: teacher dev accuracy {teacher['dev_accuracy']}, sampler on the GPU: {synthesize['sampler']}")
