"""A small real-model smoke: the packaged all-mpnet-base-v2 teacher (joined and unpacked from its five
packages) and SmolLM2 generator on real Rotten Tomatoes texts, through the real CLI, on a slice small enough
for CI (a few minutes on 2 cores)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gendistill.runtime.cli import main

pytestmark = pytest.mark.slow


def test_embedded_default_runs_end_to_end_on_a_slice(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "compress", "rotten-tomatoes", "--out", run_dir, "--per-class", 16, "--dev-size", 40, "--test-size", 100,
        "--teacher-epochs", 1, "--max-length", 48, "--synthetic", 24, "--synthesis-batch", 24, "--max-new-tokens", 24,
        "--student-epochs", 3, "--student-epoch-examples", 500, "--vocab-size", 800,
        # A student trained this briefly has near-tie logits that int8 may flip; int8 itself is tested on
        # trained students (test_export, test_compress), this test is about the real models.
        "--quantize", "none",
    ]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["dataset"] == "rotten-tomatoes" and report["labels"] == ["fresh", "rotten"]
    assert report["teacher"]["params"] > 100_000_000  # the real all-mpnet-base-v2
    teacher = json.loads((run_dir / "teacher" / "metrics.json").read_text())
    assert teacher["kind"] == "pooled" and teacher["pooling"] == "mean"  # used the way it was trained (its modules.json)
    annotate = json.loads((run_dir / "annotate" / "metrics.json").read_text())
    # 24 transfer texts: too few to repay checking a faster engine (exporting and quantizing the real teacher alone
    # took 30-50 s here), so fp32 torch annotates them at once.
    assert annotate["engine"] == "torch" and "too few to repay" in annotate["engine_check"]["skipped"]
    generator = json.loads((run_dir / "generator" / "metrics.json").read_text())
    assert generator["params"] > 100_000_000  # the real SmolLM2-135M
    # Fine-tuning on the texts must lower the dev perplexity of a real LM, or the generator is not learning.
    assert generator["dev_perplexity_after"] < generator["dev_perplexity_before"]
    synthetic = [json.loads(l)["text"] for l in (run_dir / "synthesize" / "synthetic.jsonl").read_text().splitlines()]
    assert len(synthetic) >= 20 and sum(len(t.split()) >= 3 for t in synthetic) >= 15  # real sentences, not fragments
    distill = json.loads((run_dir / "distill" / "metrics.json").read_text())
    assert distill["embedding_coverage"] > 0.5  # pieces initialised from the real teacher's WordPiece table
    assert (run_dir / "bundle" / "model.onnx").is_file()
